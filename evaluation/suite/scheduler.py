"""Run a plan on an executor: complete jobs are skipped, a job starts when the jobs it needs succeeded, a failed
job blocks only the jobs that need it, and ``run.json`` is rewritten (atomically) at every change, so a run killed
at any point leaves a summary of what it had done. Every ``TICK_SECONDS`` while jobs run, the workers' words about
their jobs go to the progress display, which is shown again."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any, Protocol

from evaluation.results import write_json_atomic
from evaluation.suite.executors import Executor
from evaluation.suite.jobs import BLOCKED, FAILED, SKIPPED, SUCCEEDED, JobProgress, Outcome
from evaluation.suite.plan import Plan

RUN_SCHEMA = "hear-atst-run/1"
RUN_FILENAME = "run.json"
TICK_SECONDS = 0.5


class Progress(Protocol):
    """A display of the run (:class:`evaluation.suite.progress.SuiteProgress`)."""

    def receive(self, message: JobProgress) -> None:
        """A worker's word about a running job."""

    def show(self, outcomes: dict[str, Outcome], running: dict[str, float]) -> None:
        """The finished jobs' outcomes and each running job's seconds so far."""


def run_plan(plan: Plan, executor: Executor, run_dir: Path, progress: Progress | None = None) -> dict[str, Outcome]:
    """Every job's outcome, by key (the plan's order)."""
    outcomes: dict[str, Outcome] = {}
    for job in plan.jobs.values():
        if job.is_complete():
            outcomes[job.key] = Outcome(job.key, SKIPPED, result_path=str(job.output))
    started = time.time()
    running: dict[Any, str] = {}
    since: dict[str, float] = {}

    def show() -> None:
        if progress:
            progress.show(outcomes, {key: time.time() - since[key] for key in running.values()})

    def record() -> None:
        write_json_atomic(run_dir / RUN_FILENAME, run_document(plan, outcomes, since, executor.description, started))
        show()

    record()
    while True:
        for job in plan.jobs.values():
            if job.key in outcomes or job.key in running.values():
                continue
            failed = [need for need in job.needs if outcomes.get(need, Outcome(need, "")).status in (FAILED, BLOCKED)]
            if failed:
                outcomes[job.key] = Outcome(job.key, BLOCKED, error=f"needs {', '.join(failed)}, which did not succeed")
            elif len(running) < executor.slots and all(
                    outcomes.get(need, Outcome(need, "")).status in (SUCCEEDED, SKIPPED) for need in job.needs):
                running[executor.submit(job)] = job.key
                since[job.key] = time.time()
        record()
        if not running:
            break
        finished: list[tuple[Any, Outcome]] = []
        while not finished:
            finished = executor.wait(list(running), TICK_SECONDS)
            for message in executor.messages():
                if progress:
                    progress.receive(message)
            if not finished:
                show()
        for handle, outcome in finished:
            del running[handle]
            outcomes[outcome.key] = outcome
    return {key: outcomes[key] for key in plan.jobs}


def run_document(plan: Plan, outcomes: dict[str, Outcome], since: dict[str, float], executor: str,
                 started: float) -> dict[str, Any]:
    """``run.json``: the run's settings and every job with its identity, status, times, result path and log."""
    def stamp(seconds: float | None) -> str | None:
        if seconds is None:
            return None
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")

    jobs = []
    for job in plan.jobs.values():
        outcome = outcomes.get(job.key)
        status = outcome.status if outcome else ("running" if job.key in since else "pending")
        jobs.append({
            "key": job.key, "kind": job.kind, "needs": list(job.needs), "identity": job.identity(), "status": status,
            "started": stamp(outcome.started if outcome and outcome.started else since.get(job.key)),
            "finished": stamp(outcome.finished if outcome else None),
            "seconds": round(outcome.seconds, 3) if outcome else None,
            "result_path": outcome.result_path if outcome else None,
            "score": outcome.score if outcome else None,
            "error": outcome.error if outcome else None, "log": outcome.log if outcome else None,
            "worker": outcome.worker if outcome else None,
        })
    counts = {status: sum(job["status"] == status for job in jobs)
              for status in (SUCCEEDED, SKIPPED, FAILED, BLOCKED, "running", "pending")}
    settings = plan.settings
    return {
        "schema": RUN_SCHEMA, "started": stamp(started), "updated": stamp(time.time()), "executor": executor,
        "settings": {"tasks_dir": str(settings.tasks_dir), "embeddings_dir": str(settings.embeddings_dir),
                     "results_dir": str(settings.results_dir), "device": settings.device,
                     "precision": settings.precision},
        "models": [setup.model_id for setup in plan.models], "tasks": [folder.name for folder in plan.tasks],
        "probes": [probe.run_name for probe in plan.probes], "counts": counts, "jobs": jobs,
    }
