"""Shared test fixtures: where ../shared lives (real data, reference fixtures, specs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Prepared small HEAR task folders built from ../shared/data, shared by the task, runner and regression tests.
pytest_plugins = ["task_fixtures", "suite_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HEAR_ATST_SHARED", REPO.parent / "shared")).resolve()


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the tests read ../shared beside the repository (or $HEAR_ATST_SHARED)"
        )
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _require(SHARED / "fixtures")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def tools_dir() -> Path:
    return _require(SHARED / "tools")
