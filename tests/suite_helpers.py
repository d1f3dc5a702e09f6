"""Helpers of the suite-runner tests: invoking ``hear-atst run`` in-process, and the fingerprints that say two runs
gave the same embeddings and results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from evaluation.embeddings import task_embeddings_dir
from evaluation.leaderboard.fingerprints import embeddings_fingerprint, result_fingerprint
from evaluation.runner import load_task_folder, resolve_model
from hear_atst.cli import app

DIGITS = "spoken_digit-1.0.9-small"
PROBE_FLAGS = ("--protocol", "hear,linear", "--grid-points", "1", "--max-epochs", "10", "--seeds", "2")


def run_cli(*args: str) -> Any:
    """``hear-atst <args>`` in this process (exit code and output in the result)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def suite_args(work: Path, tasks_dir: Path, tasks: str, *extra: str) -> list[str]:
    return ["run", "--models", "mel", "--tasks", tasks, "--tasks-dir", str(tasks_dir), "--embeddings-dir",
            str(work / "embeddings"), "--results-dir", str(work / "results"), "--run-dir", str(work / "run"),
            *PROBE_FLAGS, *extra]


def fingerprints(work: Path, tasks_dir: Path, task: str) -> dict[str, str]:
    """The embeddings fingerprint of mel on ``task`` and the result fingerprint of each probe folder."""
    folder = load_task_folder(task, tasks_dir)
    setup = resolve_model("mel")
    found = {"embeddings": embeddings_fingerprint(task_embeddings_dir(work / "embeddings", setup, folder))}
    for results in sorted((work / "results" / setup.model_id / folder.name).glob("*/results.json")):
        found[results.parent.name] = result_fingerprint(json.loads(results.read_text()))
    return found


def run_summary(work: Path) -> dict[str, Any]:
    return json.loads((work / "run" / "run.json").read_text())


def statuses(work: Path) -> dict[str, str]:
    return {job["key"]: job["status"] for job in run_summary(work)["jobs"]}
