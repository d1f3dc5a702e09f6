"""The plan of a suite run: a graph of jobs, each with the identity ``hear-atst eval`` uses for the same work.

A task is resampled once per sample rate (``prepare``), embedded once per (model, task) (``embed``), and probed
once per (model, task, probe settings) with all its seeds (``probe``). A job is complete when its output is
(the resampled audio folder, the embeddings folder's done marker, the ``results.json`` of the same seeds): complete
jobs are skipped, so a rerun of an interrupted run resumes. Every problem that can be known before any work starts
(unknown model, missing weights, missing or broken task folder, an impossible probe setting, an unwritable output
folder) is collected for all jobs at once (:class:`PlanError`).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.embeddings import ModelSetup, is_complete, task_embeddings_dir
from evaluation.protocol import ProbeConfig, check_probe_settings
from evaluation.results import RESULTS_FILENAME, read_results
from evaluation.runner import load_task_folder, resolve_model, run_folder
from evaluation.taskfolder import TaskFolder

PREPARE, EMBED, PROBE = "prepare", "embed", "probe"


class PlanError(ValueError):
    """Problems found before any work started, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) found before starting:\n" + "\n".join(
            f"  - {problem}" for problem in self.problems))


@dataclass(frozen=True)
class ModelRequest:
    """A model as the user named it (any form ``eval`` accepts), with its weights and load_model options."""

    name: str
    weights: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Where a run reads and writes, and how models run."""

    tasks_dir: Path
    embeddings_dir: Path
    results_dir: Path
    device: str = "cpu"
    precision: str = "fp32"


@dataclass(frozen=True)
class Job:
    """One unit of work. ``key`` is unique in a plan and names the job's log file; ``needs`` are keys of jobs that
    must succeed first; ``output`` is the one folder the job writes (no two jobs share one)."""

    kind: str
    key: str
    task: Path  # the task folder
    output: Path
    needs: tuple[str, ...] = ()
    setup: ModelSetup | None = None
    rate: int | None = None  # prepare: the sample rate to resample to
    probe: ProbeConfig | None = None
    embeddings_dir: Path | None = None
    results_dir: Path | None = None
    wants_gpu: bool = False
    audio_seconds: float = 0.0  # the task's audio, for --dry-run sizes

    def identity(self) -> dict[str, Any]:
        """What makes this job's output the same as an earlier one's (the identity ``eval`` gives the same work)."""
        identity: dict[str, Any] = {"kind": self.kind, "task_folder": self.task.name, "output": str(self.output)}
        if self.kind == PREPARE:
            identity["rate"] = self.rate
        if self.setup is not None:
            identity["model"] = self.setup.model_id
            identity["embeddings"] = self.setup.embeddings_dirname
        if self.probe is not None:
            identity["probe"] = self.probe.run_name
            identity["seeds"] = list(self.probe.seeds)
        return identity

    def is_complete(self) -> bool:
        """The job's output exists: a rerun skips it."""
        if self.kind == PREPARE:
            return self.rate in TaskFolder.load(self.task).sample_rates()
        if self.kind == EMBED:
            return is_complete(self.output)
        results = self.output / RESULTS_FILENAME
        if not results.is_file() or self.probe is None:
            return False
        try:
            document = read_results(results)
        except (OSError, ValueError):
            return False
        return list(document["protocol"]["seeds"]) == list(self.probe.seeds)


@dataclass(frozen=True)
class Plan:
    jobs: dict[str, Job]  # by key, in an order where every job follows the jobs it needs
    models: list[ModelSetup]
    tasks: list[TaskFolder]
    probes: list[ProbeConfig]
    settings: Settings

    def probe_jobs(self) -> list[Job]:
        return [job for job in self.jobs.values() if job.kind == PROBE]


def model_sample_rate(setup: ModelSetup) -> int:
    """The rate the model takes its audio at (the model is loaded once, on the CPU, to ask it)."""
    _, model = dataclasses.replace(setup, device="cpu").load()
    return int(model.sample_rate)


def _writable(folder: Path) -> str | None:
    """None when files can be created in ``folder`` (created if absent), else the problem."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        return f"{folder}: not a writable folder ({error.strerror or error})"
    return None


def _audio_seconds(folder: TaskFolder) -> float:
    """The task's audio duration estimated from its 16-bit WAV sizes at its first original rate."""
    rates = folder.original_rates() or folder.sample_rates()
    if not rates:
        return 0.0
    rate = rates[0]
    size = sum(path.stat().st_size - 44 for path in (folder.path / str(rate)).rglob("*.wav"))
    return max(size, 0) / (2 * rate)


def _problem(error: BaseException) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


Pairs = Mapping[tuple[int, int], Sequence[ProbeConfig]]  # (model index, task index) -> its probes


def build_plan(models: Sequence[ModelRequest], tasks: Sequence[str], probes: Sequence[ProbeConfig],
               settings: Settings, pairs: Pairs | None = None) -> Plan:
    """Resolve every model and task, check every probe setting and output folder, and lay out the jobs; raise
    :class:`PlanError` listing every problem when any is found. Every model runs every probe on every task, unless
    ``pairs`` names the (model, task) pairs to run (by position in ``models`` and ``tasks``) with their probes."""
    problems: list[str] = []
    setups: list[ModelSetup] = []
    rates: dict[str, int] = {}
    for request in models:
        try:
            setup = resolve_model(request.name, request.weights, dict(request.options), settings.precision,
                                  settings.device)
            rates[setup.model_id] = model_sample_rate(setup)
            setups.append(setup)
        except Exception as error:  # a model that cannot be resolved or loaded: reported with all the others
            problems.append(f"model {request.name}: {_problem(error)}")
    loaded: dict[int, TaskFolder] = {}
    for index, task in enumerate(tasks):
        try:
            loaded[index] = load_task_folder(task, settings.tasks_dir)
        except (LookupError, OSError, ValueError) as error:
            problems.append(f"task {task}: {_problem(error)}")
    if pairs is None:
        pairs = {(m, t): probes for m in range(len(models)) for t in range(len(tasks))}
    checked: set[tuple[int, str]] = set()
    for (_, task_index), wanted in sorted(pairs.items()):
        folder = loaded.get(task_index)
        for probe in wanted if folder else ():
            if (task_index, probe.run_name) not in checked:
                checked.add((task_index, probe.run_name))
                try:
                    check_probe_settings(probe, folder.metadata)
                except ValueError as error:
                    problems.append(f"task {folder.name}, probe {probe.run_name}: {error}")
    for name, path in (("--embeddings-dir", settings.embeddings_dir), ("--results-dir", settings.results_dir)):
        problem = _writable(path)
        if problem:
            problems.append(f"{name} {problem}")
    duplicates = {setup.model_id for setup in setups if sum(s.model_id == setup.model_id for s in setups) > 1}
    problems += [f"model {model_id} is named twice" for model_id in sorted(duplicates)]
    if problems:
        raise PlanError(problems)
    folders = [loaded[index] for index in range(len(tasks))]
    jobs = _jobs(setups, folders, pairs, settings, rates)
    resampled = {job.task for job in jobs.values() if job.kind == PREPARE and not job.is_complete()}
    problems = [f"task {problem}" for problem in map(_writable, sorted(resampled)) if problem]
    if problems:
        raise PlanError(problems)
    distinct = list({probe.run_name: probe for wanted in pairs.values() for probe in wanted}.values())
    return Plan(jobs, setups, folders, distinct, settings)


def prepare_key(folder: TaskFolder, rate: int) -> str:
    return f"{PREPARE}/{folder.name}/{rate}"


def probe_key(setup: ModelSetup, folder: TaskFolder, probe: ProbeConfig) -> str:
    return f"{PROBE}/{setup.model_id}/{folder.name}/{probe.run_name}"


def _jobs(setups: list[ModelSetup], folders: list[TaskFolder], pairs: Pairs, settings: Settings,
          rates: dict[str, int]) -> dict[str, Job]:
    jobs: dict[str, Job] = {}
    for task_index, folder in enumerate(folders):
        seconds = _audio_seconds(folder)
        used = [(setups[m], pairs[m, t]) for m, t in sorted(pairs) if t == task_index and pairs[m, t]]
        for rate in sorted({rates[setup.model_id] for setup, _ in used}):
            key = prepare_key(folder, rate)
            jobs[key] = Job(PREPARE, key, folder.path, folder.path / str(rate), rate=rate, audio_seconds=seconds)
        for setup, probes in used:
            embed = f"{EMBED}/{setup.model_id}/{folder.name}"
            jobs[embed] = Job(
                EMBED, embed, folder.path, task_embeddings_dir(settings.embeddings_dir, setup, folder),
                needs=(prepare_key(folder, rates[setup.model_id]),), setup=setup,
                embeddings_dir=settings.embeddings_dir, wants_gpu=settings.device.startswith("cuda"),
                audio_seconds=seconds)
            for probe in probes:
                key = probe_key(setup, folder, probe)
                jobs[key] = Job(PROBE, key, folder.path, run_folder(settings.results_dir, setup, folder, probe),
                                needs=(embed,), setup=setup, probe=probe, embeddings_dir=settings.embeddings_dir,
                                results_dir=settings.results_dir, audio_seconds=seconds)
    outputs = [job.output for job in jobs.values()]
    assert len(set(outputs)) == len(outputs), "two jobs would write the same folder"
    return jobs


def worker_threads(workers: int, cpus: int | None = None) -> int:
    """Torch threads per worker so that ``workers`` processes do not oversubscribe the CPUs."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))
