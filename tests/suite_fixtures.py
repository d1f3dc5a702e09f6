"""Session fixtures of the suite-runner tests (registered in ``tests/conftest.py``): a tasks folder with the real
spoken-digit task and a broken copy of it, and the fingerprints of separate ``hear-atst eval`` calls on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from suite_helpers import DIGITS, fingerprints, run_cli


@pytest.fixture(scope="session")
def tasks_dir(spoken_digit_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spoken-digit folder and a copy whose 16 kHz audio is broken (a clip is not a WAV file)."""
    folder = tmp_path_factory.mktemp("suite_tasks")
    shutil.copytree(spoken_digit_task, folder / DIGITS, ignore=shutil.ignore_patterns("_*"))
    broken = folder / "broken-1.0-small"
    shutil.copytree(spoken_digit_task, broken, ignore=shutil.ignore_patterns("_*"))
    metadata = json.loads((broken / "task_metadata.json").read_text())
    (broken / "task_metadata.json").write_text(json.dumps({**metadata, "task_name": "broken", "version": "1.0"}))
    clip = sorted((broken / "16000" / "fold00").glob("*.wav"))[0]
    clip.write_bytes(b"not audio")
    return folder


@pytest.fixture(scope="session")
def reference(tasks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Fingerprints of separate ``hear-atst eval`` calls, one per probe."""
    work = tmp_path_factory.mktemp("eval_reference")
    common = ["--model", "mel", "--task", DIGITS, "--tasks-dir", str(tasks_dir), "--embeddings-dir",
              str(work / "embeddings"), "--results-dir", str(work / "results"), "--max-epochs", "10", "--seeds", "2"]
    for probe in (["--protocol", "hear", "--grid-points", "1"], ["--protocol", "linear"]):
        result = run_cli("eval", *common, *probe)
        assert result.exit_code == 0, result.output
    return fingerprints(work, tasks_dir, DIGITS)
