"""``run_eval``: model + task -> embeddings (cached) -> probes -> ``results.json`` and the kit's scores file.

Output: ``<results_dir>/<model_id>/<task_folder>/<run>/results.json`` (``<run>``: the run's identity
:attr:`ProbeConfig.folder_name`, e.g. ``hear``, ``hear-seeds=0-4`` or ``linear-no-psds``) (schema in
:mod:`evaluation.results`) and
``test.predicted-scores.json`` (the HEAR kit's file for the first seed, with ``embedding_path``), so numbers
compare one-to-one with the HEAR leaderboard (``test_score_mean`` for k-fold tasks, ``test.test_score`` otherwise);
event tasks also get ``test.events.json`` (predicted and reference test events, schema in :mod:`evaluation.results`);
every run gets ``test.predictions.npz`` + ``test.predictions.json`` (per-clip test predictions of every seed and fold,
:mod:`evaluation.predictions`).

The output folders are checked writable before any work. A run's files are written as one unit: into a staged
folder that replaces the run folder in one step (:func:`hear_atst.atomic.staged_dir`) under the run folder's lock,
so a reader sees the old run's files or the new run's, never a mix, and a failed write leaves the old run whole.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from evaluation.embeddings import (
    DEFAULT_BATCH_SECONDS,
    ModelSetup,
    cache_provenance,
    embed_task,
    load_task_embeddings,
)
from evaluation.environment import cpu_model
from evaluation.model_source import registered_model_source
from evaluation.predictions import write_predictions
from evaluation.progress import ProgressCallback
from evaluation.protocol import ProbeConfig, TaskResult, check_probe_settings, evaluate
from evaluation.provenance import code_provenance
from evaluation.results import (
    DEFAULT_EMBEDDINGS_DIR,
    DEFAULT_RESULTS_DIR,
    EVENTS_FILENAME,
    PREDICTED_SCORES_FILENAME,
    RESULTS_FILENAME,
    RESULTS_SCHEMA,
    read_results,
    write_json_atomic,
)
from evaluation.taskfolder import TaskFolder
from hear_atst.atomic import check_writable, remove_stale_temp_files, staged_dir
from hear_atst.checkpoints import sha256_file
from hear_atst.foreign import foreign_model
from hear_atst.locks import folder_lock
from hear_atst.registry import check_model_options, find_model_spec
from hear_atst.weights import weights_for_options
from tasks.pipeline import prepare_synthetic
from tasks.registry import resolve_task_folder

VERSIONED_PACKAGES = {"hear_atst": "hear-atst", "torch": "torch", "numpy": "numpy",
                      "scikit-learn": "scikit-learn", "sed_eval": "sed_eval"}

Log = Callable[[str], None]


def resolve_model(model: str | ModuleType | torch.nn.Module, weights: str | os.PathLike[str] | None = None,
                  options: dict[str, Any] | None = None, precision: str = "fp32", device: str = "cpu",
                  api: ModuleType | None = None) -> ModelSetup:
    """The one entry point for every form of model (``docs/own-model.md``): a registered name (or its module path),
    an importable HEAR module path, a ``.py`` file, ``module:Class`` / ``file.py:Class`` naming an encoder class, or
    in Python a module, a loaded HEAR model (``api``: its module, when not the model class's own) or an encoder
    object. Registered models get their weights file found and hashed (clear errors for unknown names, missing or
    unexpected weights; ``random_weights=True`` among the options skips the weights, testing only); a model from
    elsewhere gets its weights file hashed and its options checked against what its loader takes."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available to this torch ({torch.__version__})")
    options = dict(options or {})
    spec = find_model_spec(model) if isinstance(model, str) else None
    if spec is None:
        return _foreign_setup(model, weights, options, precision, device, api)
    check_model_options(spec.name, spec.module, options)
    path = weights_for_options(spec, weights, options)
    return ModelSetup(name=spec.name, module=spec.module, options=options, weights=path,
                      weights_sha256=sha256_file(path) if path else None, precision=precision, device=device,
                      code_identity=registered_model_source(spec.module, options, weights_given=path is not None))


def _foreign_setup(model: str | ModuleType | torch.nn.Module, weights: str | os.PathLike[str] | None,
                   options: dict[str, Any], precision: str, device: str, api: ModuleType | None) -> ModelSetup:
    source = foreign_model(model, api)
    path = Path(weights) if weights is not None else None
    if path is not None and not path.is_file():
        raise ValueError(f"--weights {path}: " + ("is a directory, not a file" if path.is_dir() else "does not exist"))
    source.check_arguments(path, options)
    return ModelSetup(name=source.name, module=source.module, options=options, weights=path,
                      weights_sha256=sha256_file(path) if path else None, precision=precision, device=device,
                      source=source)


def load_task_folder(task: str, tasks_dir: str | os.PathLike[str], log: Log | None = None) -> TaskFolder:
    """Resolve ``task`` (registered name/alias, folder name or metadata ``task_name``) and validate the folder.
    A synthetic task (``demo``) that is not there yet is built first (seconds, no download)."""
    prepare_synthetic(task, Path(tasks_dir), log)
    return TaskFolder.load(resolve_task_folder(task, Path(tasks_dir)))


@dataclass
class EvalOutcome:
    results: dict[str, Any]
    results_path: Path
    predicted_scores_path: Path
    events_path: Path | None = None  # event tasks: test.events.json
    predictions_path: Path | None = None  # test.predictions.json (its arrays: test.predictions.npz beside it)

    def summary_line(self) -> str:
        """``<task> <primary> = <mean> ± <std> (<n> folds × <seeds> seeds)``, plus how many of those (fold, seed)
        scores were NaN and left out of the mean."""
        score, n_seeds = self.results["score"], len(self.results["protocol"]["seeds"])
        n_folds = len(self.results["runs"][0]["folds"])
        std = "nan" if score["std"] is None else f"{score['std']:.4f}"
        mean = "nan" if score["mean"] is None else f"{score['mean']:.4f}"
        left_out = n_folds * n_seeds - int(score["n"])
        nan_note = f", {left_out} NaN score(s) left out of the mean" if left_out else ""
        return (f"{self.results['task']['name']} {self.results['primary_score']} = {mean} ± {std} "
                f"({n_folds} folds × {n_seeds} seeds{nan_note})")


def embed(setup: ModelSetup, folder: TaskFolder, embeddings_dir: str | os.PathLike[str],
          progress: bool = True, log: Log | None = None, batch_seconds: float = DEFAULT_BATCH_SECONDS) -> Path:
    """The embedding stage alone (cached): the embeddings folder in the kit's layout."""
    note = setup.source.precision_note(setup.precision) if setup.source else None
    if log and note:
        log(note)
    return embed_task(setup, folder, embeddings_dir, batch_seconds=batch_seconds, progress=progress, on_start=log)


def run_folder(results_dir: str | os.PathLike[str], setup: ModelSetup, folder: TaskFolder, probe: ProbeConfig
               ) -> Path:
    """Where a run writes its files: ``<results_dir>/<model_id>/<task_folder>/<run identity>``."""
    return Path(results_dir) / setup.model_id / folder.name / probe.folder_name


def check_run_inputs(setup: ModelSetup, folder: TaskFolder, probe: ProbeConfig,
                     embeddings_dir: str | os.PathLike[str], results_dir: str | os.PathLike[str]) -> Path:
    """What can fail before any work: the probe settings for this task and writable output folders (a read-only
    folder fails now, not after hours of embedding and probing). Returns the run's results folder."""
    check_probe_settings(probe, folder.metadata)
    out_dir = run_folder(results_dir, setup, folder, probe)
    for directory in (out_dir.parent, Path(embeddings_dir)):
        check_writable(directory)
    return out_dir


def run_eval(setup: ModelSetup, folder: TaskFolder, *, embeddings_dir: str | os.PathLike[str] = DEFAULT_EMBEDDINGS_DIR,
             results_dir: str | os.PathLike[str] = DEFAULT_RESULTS_DIR, probe: ProbeConfig | None = None,
             progress: bool = True, log: Log | None = None, probe_progress: ProgressCallback | None = None
             ) -> EvalOutcome:
    """Embed (cached), probe and score one task; write ``results.json``, ``test.predicted-scores.json`` and, for
    event tasks, ``test.events.json``. ``progress`` shows the embedding progress bar; ``probe_progress`` receives
    the probe stage's events (e.g. a :class:`evaluation.progress.ProgressDisplay`)."""
    probe = probe or ProbeConfig()
    out_dir = check_run_inputs(setup, folder, probe, embeddings_dir, results_dir)
    started = time.perf_counter()
    embeddings_path = embed(setup, folder, embeddings_dir, progress=progress, log=log)
    embedded = time.perf_counter()
    task_embeddings = load_task_embeddings(embeddings_path)
    if log:
        log(f"probing {folder.name} ({probe.protocol} protocol, seeds {probe.seeds}) on {probe.device}")
    result = evaluate(task_embeddings, probe, None if probe_progress else log, probe_progress)  # one or the other
    finished = time.perf_counter()
    results = results_document(setup, folder, result, probe, embeddings_path, timing={
        "embed": embedded - started, "probe": finished - embedded, "total": finished - started})
    has_events = result.events is not None
    predictions_name = None
    with folder_lock(out_dir, log):
        remove_stale_temp_files(out_dir.parent, recursive=False)
        with staged_dir(out_dir) as staged:
            write_json_atomic(staged / PREDICTED_SCORES_FILENAME,
                              {**result.to_predicted_scores(0), "embedding_path": str(embeddings_path)})
            if result.events is not None:
                write_json_atomic(staged / EVENTS_FILENAME, result.events.to_json())
            if result.predictions is not None:
                predictions_name = write_predictions(staged, result.predictions).name
            write_json_atomic(staged / RESULTS_FILENAME, results)
    return EvalOutcome(results=read_results(out_dir / RESULTS_FILENAME), results_path=out_dir / RESULTS_FILENAME,
                       predicted_scores_path=out_dir / PREDICTED_SCORES_FILENAME,
                       events_path=out_dir / EVENTS_FILENAME if has_events else None,
                       predictions_path=out_dir / predictions_name if predictions_name else None)


def results_document(setup: ModelSetup, folder: TaskFolder, result: TaskResult, probe: ProbeConfig,
                     embeddings_path: Path, timing: dict[str, float]) -> dict[str, Any]:
    """``results.json`` for one (model, task) run (schema ``hear-atst-results/1``)."""
    metadata = folder.metadata
    return {
        "schema": RESULTS_SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"id": setup.model_id, "name": setup.name, "module": setup.module, "options": setup.options,
                  "weights": str(setup.weights) if setup.weights else None, "weights_sha256": setup.weights_sha256,
                  **({"source": setup.source.record} if setup.source else {})},
        "task": {"name": metadata["task_name"], "folder": folder.name, "embedding_type": metadata["embedding_type"],
                 "prediction_type": metadata["prediction_type"], "split_mode": metadata["split_mode"],
                 "evaluation": list(metadata["evaluation"]),
                 "clips": sum(len(files) for files in folder.labels.values())},
        **result.to_json(),
        "run_id": probe.folder_name,
        "provenance": {**code_provenance(), "embeddings": cache_provenance(embeddings_path)},
        "timing_s": timing,
        "environment": {**{key: importlib.metadata.version(dist) for key, dist in VERSIONED_PACKAGES.items()},
                        "python": platform.python_version(), "cpu": cpu_model(), "device": probe.device,
                        "precision": setup.precision},
    }

