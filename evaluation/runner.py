"""``run_eval``: model + task -> embeddings (cached) -> probes -> ``results.json`` and the kit's scores file.

Output: ``<results_dir>/<model_id>/<task_folder>/<probe>/results.json`` (``<probe>``:
:attr:`ProbeConfig.run_name`, e.g. ``hear`` or ``linear``) (schema in :mod:`evaluation.results`) and
``test.predicted-scores.json`` (the HEAR kit's file for the first seed, with ``embedding_path``), so numbers
compare one-to-one with the HEAR leaderboard (``test_score_mean`` for k-fold tasks, ``test.test_score`` otherwise);
event tasks also get ``test.events.json`` (predicted and reference test events, schema in :mod:`evaluation.results`);
every run gets ``test.predictions.npz`` + ``test.predictions.json`` (per-clip test predictions of every seed and fold,
:mod:`evaluation.predictions`).
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

from evaluation.embeddings import DEFAULT_BATCH_SECONDS, ModelSetup, embed_task, load_task_embeddings
from evaluation.environment import cpu_model
from evaluation.predictions import write_predictions
from evaluation.progress import ProgressCallback
from evaluation.protocol import ProbeConfig, TaskResult, check_probe_settings, evaluate
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
from hear_atst.checkpoints import sha256_file
from hear_atst.foreign import foreign_model
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
                      weights_sha256=sha256_file(path) if path else None, precision=precision, device=device)


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
        """``<task> <primary> = <mean> ± <std> (<n> folds × <seeds> seeds)``."""
        score, n_seeds = self.results["score"], len(self.results["protocol"]["seeds"])
        n_folds = len(self.results["runs"][0]["folds"])
        std = "nan" if score["std"] is None else f"{score['std']:.4f}"
        mean = "nan" if score["mean"] is None else f"{score['mean']:.4f}"
        return (f"{self.results['task']['name']} {self.results['primary_score']} = {mean} ± {std} "
                f"({n_folds} folds × {n_seeds} seeds)")


def embed(setup: ModelSetup, folder: TaskFolder, embeddings_dir: str | os.PathLike[str],
          progress: bool = True, log: Log | None = None, batch_seconds: float = DEFAULT_BATCH_SECONDS) -> Path:
    """The embedding stage alone (cached): the embeddings folder in the kit's layout."""
    note = setup.source.precision_note(setup.precision) if setup.source else None
    if log and note:
        log(note)
    return embed_task(setup, folder, embeddings_dir, batch_seconds=batch_seconds, progress=progress, on_start=log)


def run_folder(results_dir: str | os.PathLike[str], setup: ModelSetup, folder: TaskFolder, probe: ProbeConfig
               ) -> Path:
    """Where a run writes its files: ``<results_dir>/<model_id>/<task_folder>/<probe run name>``."""
    return Path(results_dir) / setup.model_id / folder.name / probe.run_name


def run_eval(setup: ModelSetup, folder: TaskFolder, *, embeddings_dir: str | os.PathLike[str] = DEFAULT_EMBEDDINGS_DIR,
             results_dir: str | os.PathLike[str] = DEFAULT_RESULTS_DIR, probe: ProbeConfig | None = None,
             progress: bool = True, log: Log | None = None, probe_progress: ProgressCallback | None = None
             ) -> EvalOutcome:
    """Embed (cached), probe and score one task; write ``results.json``, ``test.predicted-scores.json`` and, for
    event tasks, ``test.events.json``. ``progress`` shows the embedding progress bar; ``probe_progress`` receives
    the probe stage's events (e.g. a :class:`evaluation.progress.ProgressDisplay`)."""
    probe = probe or ProbeConfig()
    check_probe_settings(probe, folder.metadata)  # before embedding, which may take hours
    started = time.perf_counter()
    embeddings_path = embed(setup, folder, embeddings_dir, progress=progress, log=log)
    embedded = time.perf_counter()
    task_embeddings = load_task_embeddings(embeddings_path)
    if log:
        log(f"probing {folder.name} ({probe.protocol} protocol, seeds {probe.seeds}) on {probe.device}")
    result = evaluate(task_embeddings, probe, None if probe_progress else log, probe_progress)  # one or the other
    finished = time.perf_counter()
    out_dir = run_folder(results_dir, setup, folder, probe)
    results = results_document(setup, folder, result, probe, timing={
        "embed": embedded - started, "probe": finished - embedded, "total": finished - started})
    results_path, scores_path = out_dir / RESULTS_FILENAME, out_dir / PREDICTED_SCORES_FILENAME
    write_json_atomic(scores_path, {**result.to_predicted_scores(0), "embedding_path": str(embeddings_path)})
    events_path = None
    if result.events is not None:
        events_path = out_dir / EVENTS_FILENAME
        write_json_atomic(events_path, result.events.to_json())
    predictions_path = write_predictions(out_dir, result.predictions) if result.predictions is not None else None
    write_json_atomic(results_path, results)
    return EvalOutcome(results=read_results(results_path), results_path=results_path,
                       predicted_scores_path=scores_path, events_path=events_path, predictions_path=predictions_path)


def results_document(setup: ModelSetup, folder: TaskFolder, result: TaskResult, probe: ProbeConfig,
                     timing: dict[str, float]) -> dict[str, Any]:
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
        "timing_s": timing,
        "environment": {**{key: importlib.metadata.version(dist) for key, dist in VERSIONED_PACKAGES.items()},
                        "python": platform.python_version(), "cpu": cpu_model(), "device": probe.device,
                        "precision": setup.precision},
    }

