"""Every probe by its protocol name (``--protocol``): one line each."""

from __future__ import annotations

from evaluation.probes.base import Probe
from evaluation.probes.hear_grid import HearGridProbe
from evaluation.probes.knn import KnnProbe
from evaluation.probes.linear import LinearProbe

PROBES: dict[str, type[Probe]] = {
    "hear": HearGridProbe,
    "linear": LinearProbe,
    "knn": KnnProbe,
}


def probe_class(protocol: str) -> type[Probe]:
    """The probe of a protocol name, or a ValueError listing the known ones."""
    if protocol not in PROBES:
        raise ValueError(f"protocol must be one of {', '.join(repr(name) for name in PROBES)}, got {protocol!r}")
    return PROBES[protocol]
