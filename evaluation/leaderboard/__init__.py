"""Leaderboards: aggregate runs, compare with published tables, regression gate."""
