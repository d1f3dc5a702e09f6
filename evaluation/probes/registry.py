"""Every probe by its protocol name (``--protocol``): one line each, ``name: "module:Class"``.

Entries are import paths, so that the command line can list the names without importing torch; a probe's module is
imported when it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluation.probes.base import Probe

PROBES: dict[str, str] = {
    "hear": "evaluation.probes.hear_grid:HearGridProbe",
    "linear": "evaluation.probes.linear:LinearProbe",
    "knn": "evaluation.probes.knn:KnnProbe",
}


def probe_class(protocol: str) -> type[Probe]:
    """The probe of a protocol name, or a ValueError listing the known ones."""
    if protocol not in PROBES:
        raise ValueError(f"protocol must be one of {', '.join(repr(name) for name in PROBES)}, got {protocol!r}")
    module, name = PROBES[protocol].split(":")
    return getattr(importlib.import_module(module), name)


def training_protocols() -> list[str]:
    """The protocols whose probe trains for epochs: an epoch cap applies to these only."""
    return [name for name in PROBES if probe_class(name).trains]
