"""Running one job in a worker process (a local pool's or a Ray worker): the existing one-pair pipeline
(:func:`evaluation.runner.embed`, :func:`evaluation.runner.run_eval`), a log file per job, and a small outcome the
driver records. A job that raises is reported (``failed``, with its error and log), never retried.

While a job runs, its worker tells the driver (through the executor's channel, ``send``) which worker holds it,
then forwards its probe stage's progress events (:mod:`evaluation.progress`) in batches: the suite's progress
display (:mod:`evaluation.suite.progress`) shows them on that worker's line."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.progress import PhaseFinished, ProbeFinished, ProgressEvent, StepFinished, phase_line
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


@dataclass(frozen=True)
class JobProgress:
    """A worker's word to the driver about a running job: that it started on ``worker`` (no events), then its probe
    stage's events since the last word."""

    key: str
    worker: dict[str, Any]  # host, pid, CUDA_VISIBLE_DEVICES
    events: tuple[ProgressEvent, ...] = ()


Send = Callable[[JobProgress], None]  # puts a word on the executor's channel to the driver
FORWARD_SECONDS = 0.5  # a worker sends its probe events at most this often (and at the probe's end)


class Forwarder:
    """The probe stage's progress callback in a worker: batches the events and sends them every ``interval``
    seconds and at the end (of a batch's :class:`StepFinished` events only the latest is kept: the display shows the
    batch under way); writes each finished phase's line to the job's log (the probe logs through its events)."""

    def __init__(self, key: str, worker: dict[str, Any], send: Send, log: Callable[[str], None],
                 interval: float = FORWARD_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.key, self.worker, self.send, self.log = key, worker, send, log
        self.interval, self.clock = interval, clock
        self.pending: list[ProgressEvent] = []
        self.sent = clock()

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, PhaseFinished):
            self.log(phase_line(event))
        if isinstance(event, StepFinished) and self.pending and isinstance(self.pending[-1], StepFinished):
            self.pending[-1] = event
        else:
            self.pending.append(event)
        if isinstance(event, ProbeFinished) or self.clock() - self.sent >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(JobProgress(self.key, self.worker, tuple(self.pending)))
            self.pending = []
        self.sent = self.clock()


def log_path(log_dir: Path, key: str) -> Path:
    return Path(log_dir) / (re.sub(r"[^A-Za-z0-9._=+-]+", "__", key) + ".log")


def worker_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def execute_job(job: Job, log_dir: Path, threads: int, send: Send) -> Outcome:
    """Run ``job`` with ``threads`` torch threads; its notes and any traceback go to its log file, its worker and
    probe progress to ``send``."""
    import torch

    torch.set_num_threads(threads)
    path = log_path(log_dir, job.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    started, clock = time.time(), time.perf_counter()
    worker = worker_identity()
    send(JobProgress(job.key, worker))
    with path.open("a", encoding="utf-8") as log_file:
        def log(message: str) -> None:
            log_file.write(message + "\n")
            log_file.flush()

        log(f"{job.key}: started on {worker['host']} pid {worker['pid']} "
            f"(CUDA_VISIBLE_DEVICES={worker['cuda_visible_devices']}, {threads} torch threads)")
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                result_path, score = _run(job, log, Forwarder(job.key, worker, send, log))
        except Exception as error:
            log(traceback.format_exc())
            return Outcome(job.key, FAILED, time.perf_counter() - clock, error=f"{type(error).__name__}: {error}",
                           log=str(path), worker=worker, started=started, finished=time.time())
        seconds = time.perf_counter() - clock
        log(f"{job.key}: done in {seconds:.1f} s -> {result_path}")
    return Outcome(job.key, SUCCEEDED, seconds, result_path=str(result_path), log=str(path), worker=worker,
                   score=score, started=started, finished=time.time())


def _run(job: Job, log: Callable[[str], None], forward: Forwarder) -> tuple[Path, dict[str, Any] | None]:
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
                       probe=job.probe, progress=False, log=log, probe_progress=forward)
    results = outcome.results
    log(outcome.summary_line())
    return outcome.results_path, {"metric": results["primary_score"], "mean": results["score"]["mean"],
                                  "std": results["score"]["std"]}
