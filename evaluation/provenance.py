"""Where a results file's numbers come from: the package version and, when the code runs from a git checkout,
its revision (``git_sha``) and whether it had uncommitted changes to tracked files (``dirty``)."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding evaluation/ and hear_atst/
GIT_TIMEOUT_S = 10


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def source_revision() -> dict[str, Any] | None:
    """``{"git_sha", "dirty"}`` of the checkout the code runs from; None for an installed copy (no ``.git``)."""
    if not (CHECKOUT / ".git").exists():
        return None
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    if sha is None or status is None:
        return None
    return {"git_sha": sha.strip(), "dirty": bool(status.strip())}


def code_provenance() -> dict[str, Any]:
    """The package version and the source revision (None outside a git checkout)."""
    return {"package_version": importlib.metadata.version("hear-atst"), "source_revision": source_revision()}
