"""HEAR task folders: a registry of tasks and preparers that build them from the official downloads."""
