"""Probes behind one interface (``base.py``), found by protocol name in ``registry.py``: the HEAR kit's MLP grid
(batched heads) and EVAR's linear probe, sharing one training loop, and a cosine kNN probe."""
