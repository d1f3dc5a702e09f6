"""Probes: the HEAR kit's MLP grid (batched heads) and EVAR's linear probe, sharing one training loop."""
