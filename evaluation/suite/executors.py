"""Where jobs run: ``local`` (a pool of worker processes on this machine) or ``ray`` (Ray tasks on a cluster).

Both take a job, run :func:`evaluation.suite.jobs.execute_job` somewhere, and hand back its
:class:`~evaluation.suite.jobs.Outcome`; the scheduler (:mod:`evaluation.suite.scheduler`) never runs more than
``slots`` jobs at once, so every submitted job is a running one. Each has a channel from its workers to the
driver for the running jobs' :class:`~evaluation.suite.jobs.JobProgress` (a process queue locally, a Ray queue
actor on a cluster), drained by :meth:`Executor.messages`.

Ray: embedding jobs ask for a GPU when the model runs on CUDA (Ray sets ``CUDA_VISIBLE_DEVICES`` for the task),
every job asks for its torch threads in CPUs. A lost worker or node is retried by Ray (``max_retries``); a job that
raises returns a ``failed`` outcome and is not retried.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import queue
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from evaluation.suite.jobs import FAILED, JobProgress, Outcome, execute_job, log_path
from evaluation.suite.plan import EMBED, Job, worker_threads

RAY_MAX_RETRIES = 3  # a worker or node lost mid-job: Ray runs the job again (it resumes from its cached parts)


class Executor(Protocol):
    slots: int
    description: str

    def submit(self, job: Job) -> Any: ...

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        """The jobs among ``handles`` that finished within ``timeout`` seconds (none when it ran out)."""

    def messages(self) -> list[JobProgress]:
        """What the workers said about their running jobs since the last call."""

    def close(self) -> None: ...


PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal a process gets when its parent dies


_channel: Any = None  # in a local worker: the queue to the driver


def _init_worker(channel: Any) -> None:
    """A local worker: ``channel`` to the driver (each job sets its torch threads); on Linux it is killed with the
    driver (a ``kill -9`` of ``run`` leaves no orphan finishing a job while the rerun starts it again)."""
    global _channel
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _channel = channel


def _local_job(job: Job, log_dir: Path, threads: int) -> Outcome:
    return execute_job(job, log_dir, threads, _channel.put)


def _ray_job(job: Job, log_dir: Path, threads: int, channel: Any) -> Outcome:
    return execute_job(job, log_dir, threads, channel.put)


def _drain(channel: Any) -> list[JobProgress]:
    found = []
    while True:
        try:
            found.append(channel.get_nowait())
        except queue.Empty:
            return found


class LocalExecutor:
    """``workers`` processes (spawned, so none inherits the driver's threads), each with ``cpus // workers`` torch
    threads."""

    def __init__(self, workers: int, log_dir: Path, cpus: int | None = None) -> None:
        self.slots = workers
        self.threads = worker_threads(workers, cpus)
        self.log_dir = log_dir
        self.description = f"local, {workers} worker process(es) × {self.threads} torch thread(s)"
        self._context = multiprocessing.get_context("spawn")
        self._pool, self._channel = self._new_pool()
        self._jobs: dict[Future[Outcome], Job] = {}

    def _new_pool(self) -> tuple[ProcessPoolExecutor, Any]:
        """Worker processes and their queue to the driver (a new one with a new pool: a worker killed while writing
        to the old one may have left it locked)."""
        channel = self._context.Queue()
        pool = ProcessPoolExecutor(self.slots, mp_context=self._context, initializer=_init_worker,
                                   initargs=(channel,))
        return pool, channel

    def submit(self, job: Job) -> Future[Outcome]:
        future = self._pool.submit(_local_job, job, self.log_dir, self.threads)
        self._jobs[future] = job
        return future

    def messages(self) -> list[JobProgress]:
        return _drain(self._channel)

    def wait(self, handles: list[Future[Outcome]], timeout: float) -> list[tuple[Future[Outcome], Outcome]]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        finished = []
        broken = False
        for future in done:
            job = self._jobs.pop(future)
            try:
                finished.append((future, future.result()))
            except BrokenProcessPool:  # a worker died (killed, out of memory): the jobs it held are reported
                broken = True
                finished.append((future, Outcome(job.key, FAILED, error="a worker process died during this job "
                                                 "(rerun to resume)", log=str(log_path(self.log_dir, job.key)),
                                                 finished=time.time())))
        if broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._channel = self._new_pool()
        return finished

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._channel.close()


class RayExecutor:
    """Jobs as Ray tasks on the cluster at ``address`` (None: the running one, or a new local one with ``workers``
    CPUs). ``embed_gpus``: GPUs each embedding job asks for (default: 1 when the model runs on CUDA, else 0)."""

    def __init__(self, workers: int, log_dir: Path, address: str | None = None, embed_gpus: float | None = None,
                 threads: int = 1) -> None:
        import ray
        from ray.util.queue import Queue as RayQueue

        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                self._started = True
        self.slots = workers
        self.threads = threads
        self.log_dir = log_dir
        self.embed_gpus = embed_gpus
        self._remote = ray.remote(max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(_ray_job)
        self._channel = RayQueue(actor_options={"num_cpus": 0})  # an actor that holds no CPU a job could use
        self._keys: dict[Any, str] = {}
        resources = ray.cluster_resources()
        self.description = (f"ray ({'cluster ' + address if address else 'this machine'}: "
                            f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs), "
                            f"{workers} jobs at a time × {threads} torch thread(s)")

    def submit(self, job: Job) -> Any:
        gpus = (self.embed_gpus if self.embed_gpus is not None else float(job.wants_gpu)) if job.kind == EMBED else 0
        ref = self._remote.options(num_cpus=self.threads, num_gpus=gpus).remote(job, self.log_dir, self.threads,
                                                                                self._channel)
        self._keys[ref] = job.key
        return ref

    def messages(self) -> list[JobProgress]:
        waiting = self._channel.qsize()
        return self._channel.get_nowait_batch(waiting) if waiting else []

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        finished = []
        for ref in done:
            key = self._keys.pop(ref)
            try:
                finished.append((ref, self._ray.get(ref)))
            except self._ray.exceptions.RayError as error:  # retries exhausted: the worker or node kept dying
                finished.append((ref, Outcome(key, FAILED, error=f"{type(error).__name__}: {error}",
                                              log=str(log_path(self.log_dir, key)), finished=time.time())))
        return finished

    def close(self) -> None:
        self._channel.shutdown()
        if self._started:
            self._ray.shutdown()
