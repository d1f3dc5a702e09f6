"""What a run ends with: a models × tasks table of primary scores and the list of jobs that did not succeed."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evaluation.results import RESULTS_FILENAME, read_results
from evaluation.suite.jobs import BLOCKED, FAILED, Outcome
from evaluation.suite.plan import Plan


def primary_scores(plan: Plan) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``(model id, task folder, probe run name) -> {"metric", "mean", "std"}`` of every probe job with results."""
    scores = {}
    for job in plan.probe_jobs():
        path = job.output / RESULTS_FILENAME
        if job.setup is None or job.probe is None or not path.is_file():
            continue
        results = read_results(path)
        scores[(job.setup.model_id, job.task.name, job.probe.run_name)] = {
            "metric": results["primary_score"], **results["score"]}
    return scores


def _cell(score: dict[str, Any] | None) -> str:
    if score is None:
        return "–"
    mean = score.get("mean")
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return f"nan ({score['metric']})"
    return f"{mean:.4f} ({score['metric']})"


def score_table(plan: Plan, width: int = 200) -> str:
    """Tasks × models (a column per model and probe): the primary score's mean over seeds and its metric."""
    scores = primary_scores(plan)
    table = Table(title="primary scores (mean over seeds)")
    table.add_column("task")
    columns = [(setup.model_id, probe.run_name) for setup in plan.models for probe in plan.probes]
    for model_id, run_name in columns:
        table.add_column(f"{model_id}\n{run_name}", overflow="fold")
    for folder in plan.tasks:
        table.add_row(folder.name, *(_cell(scores.get((model_id, folder.name, run_name)))
                                     for model_id, run_name in columns))
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    return buffer.getvalue()


def failures(outcomes: dict[str, Outcome]) -> list[str]:
    """One line per job that failed (its error and log) or was blocked by one."""
    lines = []
    for outcome in outcomes.values():
        if outcome.status == FAILED:
            lines.append(f"FAILED {outcome.key}: {outcome.error} (log: {outcome.log})")
        elif outcome.status == BLOCKED:
            lines.append(f"BLOCKED {outcome.key}: {outcome.error}")
    return lines


def write_run_leaderboard(results_dir: Path, run_dir: Path, published_dir: Path) -> Path:
    """The leaderboard of the runs under ``results_dir`` (``leaderboard.md`` and ``.csv`` in ``run_dir``)."""
    from evaluation.leaderboard.report import write_leaderboard

    return write_leaderboard(results_dir, published_dir, run_dir).markdown
