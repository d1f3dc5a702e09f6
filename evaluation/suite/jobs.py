"""Running one job in a worker process (a local pool's or a Ray worker): the existing one-pair pipeline
(:func:`evaluation.runner.embed`, :func:`evaluation.runner.run_eval`), a log file per job, and a small outcome the
driver records. A job that raises is reported (``failed``, with its error and log), never retried."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.suite.plan import EMBED, PREPARE, Job
from evaluation.taskfolder import TaskFolder

SUCCEEDED, FAILED, SKIPPED, BLOCKED = "succeeded", "failed", "skipped", "blocked"


@dataclass
class Outcome:
    """What the driver learns of a job. ``skipped``: complete before this run; ``blocked``: a job it needs failed."""

    key: str
    status: str
    seconds: float = 0.0
    result_path: str | None = None
    error: str | None = None
    log: str | None = None
    worker: dict[str, Any] | None = None  # host, pid, CUDA_VISIBLE_DEVICES
    score: dict[str, Any] | None = None  # probe jobs: primary metric and its mean over seeds
    started: float | None = None  # epoch seconds
    finished: float | None = None


def log_path(log_dir: Path, key: str) -> Path:
    return Path(log_dir) / (re.sub(r"[^A-Za-z0-9._=+-]+", "__", key) + ".log")


def worker_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def execute_job(job: Job, log_dir: Path, threads: int) -> Outcome:
    """Run ``job`` with ``threads`` torch threads; its notes and any traceback go to its log file."""
    import torch

    torch.set_num_threads(threads)
    path = log_path(log_dir, job.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    started, clock = time.time(), time.perf_counter()
    worker = worker_identity()
    with path.open("a", encoding="utf-8") as log_file:
        def log(message: str) -> None:
            log_file.write(message + "\n")
            log_file.flush()

        log(f"{job.key}: started on {worker['host']} pid {worker['pid']} "
            f"(CUDA_VISIBLE_DEVICES={worker['cuda_visible_devices']}, {threads} torch threads)")
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                result_path, score = _run(job, log)
        except Exception as error:
            log(traceback.format_exc())
            return Outcome(job.key, FAILED, time.perf_counter() - clock, error=f"{type(error).__name__}: {error}",
                           log=str(path), worker=worker, started=started, finished=time.time())
        seconds = time.perf_counter() - clock
        log(f"{job.key}: done in {seconds:.1f} s -> {result_path}")
    return Outcome(job.key, SUCCEEDED, seconds, result_path=str(result_path), log=str(path), worker=worker,
                   score=score, started=started, finished=time.time())


def _run(job: Job, log: Any) -> tuple[Path, dict[str, Any] | None]:
    from evaluation.runner import embed, run_eval

    folder = TaskFolder.load(job.task)
    if job.kind == PREPARE:
        assert job.rate is not None
        log(f"resampling {folder.name} to {job.rate} Hz (when not done already)")
        return folder.audio_dir(job.rate), None
    assert job.setup is not None and job.embeddings_dir is not None
    if job.kind == EMBED:
        return embed(job.setup, folder, job.embeddings_dir, progress=False, log=log), None
    assert job.results_dir is not None and job.probe is not None
    outcome = run_eval(job.setup, folder, embeddings_dir=job.embeddings_dir, results_dir=job.results_dir,
                       probe=job.probe, progress=False, log=log)
    results = outcome.results
    log(outcome.summary_line())
    return outcome.results_path, {"metric": results["primary_score"], "mean": results["score"]["mean"],
                                  "std": results["score"]["std"]}
