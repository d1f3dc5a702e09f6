"""Session fixtures: real data laid out like the official downloads, and small prepared HEAR task folders (16 kHz).

Register with ``pytest_plugins = ["task_fixtures"]`` in ``tests/conftest.py``. Each ``*_task`` fixture returns the
path of a prepared task folder (``--mode small``, 16000 Hz) built once per session from ``../shared/data``:

- ``esc10_task``: ESC-10 in the ESC-50 layout -> ``esc50-v2.0.0-small`` (400 clips x 2 s, 10 classes, 5 folds)
- ``speech_commands_task``: HEAR's small Speech Commands archives -> ``speech_commands-v0.0.2-small`` (56/132/96)
- ``voxceleb1_task``: LibriSpeech in the VoxCeleb1 layout -> ``voxceleb1-v1.1-hear-atst-small`` (98/34/33, 2 s)
- ``dcase2016_small_task``: 72 re-synthesised DCASE 2016 scenes, 30 s prefixes -> ``dcase2016_task2-hear2021-small``
- ``spoken_digit_task``: FSDD -> ``spoken_digit-1.0.9-small`` (the 100 clips of HEAR's small zip, 5 x 20, 0.56 s)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.pipeline import prepare_task
from tasks.registry import get_spec

SAMPLE_RATE = 16000


def run_layout_tool(tools_dir: Path, script: str, out: Path, *args: str) -> Path:
    """Run one of ../shared/tools' layout scripts with this interpreter; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, str(tools_dir / script), str(out), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return out


@pytest.fixture(scope="session")
def layouts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layouts")


@pytest.fixture(scope="session")
def prepared_tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hear_tasks")


@pytest.fixture(scope="session")
def esc50_layout(tools_dir: Path, layouts_dir: Path) -> Path:
    """``<dir>/ESC-50-master/`` with the 400 ESC-10 clips at 44.1 kHz."""
    return run_layout_tool(tools_dir, "make_esc50_layout.py", layouts_dir / "esc50")


@pytest.fixture(scope="session")
def voxceleb1_layout(tools_dir: Path, layouts_dir: Path) -> Path:
    """``<dir>/vox1/`` (iden_split.txt, wav/)."""
    return run_layout_tool(tools_dir, "make_voxceleb1_layout.py", layouts_dir / "vox")


@pytest.fixture(scope="session")
def dcase2016_small_layout(tools_dir: Path, layouts_dir: Path) -> Path:
    """All 72 scenes, first 30 s, 16 kHz, in the official dev/eval layout."""
    return run_layout_tool(
        tools_dir, "make_dcase2016_layout.py", layouts_dir / "dcase30", "--scenes", "all", "--duration-sec", "30",
        "--rate", str(SAMPLE_RATE),
    )


@pytest.fixture(scope="session")
def speech_commands_source(data_dir: Path) -> Path:
    return data_dir / "speech_commands_small"


@pytest.fixture(scope="session")
def fsdd_source(data_dir: Path) -> Path:
    return data_dir / "fsdd"


def _prepare(name: str, source: Path, tasks_dir: Path) -> Path:
    return prepare_task(get_spec(name), tasks_dir, source=source, sample_rates=(SAMPLE_RATE,), mode="small")


@pytest.fixture(scope="session")
def esc10_task(esc50_layout: Path, prepared_tasks_dir: Path) -> Path:
    return _prepare("esc50", esc50_layout, prepared_tasks_dir)


@pytest.fixture(scope="session")
def speech_commands_task(speech_commands_source: Path, prepared_tasks_dir: Path) -> Path:
    return _prepare("speech_commands", speech_commands_source, prepared_tasks_dir)


@pytest.fixture(scope="session")
def voxceleb1_task(voxceleb1_layout: Path, prepared_tasks_dir: Path) -> Path:
    return _prepare("voxceleb1", voxceleb1_layout, prepared_tasks_dir)


@pytest.fixture(scope="session")
def dcase2016_small_task(dcase2016_small_layout: Path, prepared_tasks_dir: Path) -> Path:
    return _prepare("dcase2016_task2", dcase2016_small_layout, prepared_tasks_dir)


@pytest.fixture(scope="session")
def spoken_digit_task(fsdd_source: Path, prepared_tasks_dir: Path) -> Path:
    return _prepare("spoken_digit", fsdd_source, prepared_tasks_dir)
