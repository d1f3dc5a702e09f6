"""The results file of one (model, task) evaluation, the events file of event tasks, and atomic JSON I/O.

Layout: ``<results_dir>/<model_id>/<task_folder>/<probe>/results.json`` (this schema) next to the HEAR kit's
``test.predicted-scores.json``. ``model_id`` is the model name plus its options plus, when a weights file is used,
the first 8 hex digits of its sha256, e.g. ``atst_frame-blocks=1-weights=1a2b3c4d`` (``mel``: no weights, no hash).

``results.json`` (schema ``hear-atst-results/1``)::

    {
      "schema": "hear-atst-results/1",
      "date": "2026-11-22T10:00:00+00:00",
      "model": {"id", "name", "module", "options": {}, "weights": str|null, "weights_sha256": str|null},
      "task": {"name", "folder", "embedding_type", "prediction_type", "split_mode", "evaluation": [...],
               "clips": int},   # files over all splits (the leaderboard keys a non-standard count apart)
      "protocol": {"name": "hear"|"linear"|"knn",
                   "run": "hear"|"hear-grid=fast"|...,   # ProbeConfig.run_name: name + non-default settings
                   "shuffle": bool, "stop_on_non_finite": bool, "grid_points": int|null,
                   "grid": "default"|"fast"|"faster"|null, "seeds": [int, ...],
                   "precision": "fp32"|"bf16",   # probe GEMMs
                   "knn_standardize": bool},   # knn only
      "primary_score": "top1_acc",
      "higher_is_better": true,
      "score": {"mean", "std", "ci95": [lo, hi], "n"},         # the primary score over folds x seeds
      "scores": {"<metric>": {"mean", "std", "ci95", "n"}, ...},  # every metric the task lists
      "class_scores": {"basis": str,   # per label (evaluation.class_scores); absent in older files
                       "classes": [{"label", "support", "precision", "recall", "f_measure",
                                    "average_precision"}, ...],   # scene; event: no average_precision
                       "confusion": {"seed": int, "counts": [[int]]}},   # multiclass: reference x predicted
      "runs": [{"seed": 0,
                "selected_hyperparameters": {...},
                "grid": [{"hyperparameters": {...}, "validation_score": float, "epoch": int,   # hear protocol:
                          "epochs_run": int}, ...],                                      # every point, fold 0
                "folds": {"fold00": {"scores": {"<metric>": float}, "validation_score": float,
                                      "epoch": int, "epochs_run": int, "postprocessing": {...}|null}}}],
      "timing_s": {"embed": float, "probe": float, "total": float},
      "environment": {"hear_atst", "python", "torch", "numpy", "scikit-learn", "sed_eval", "cpu", "device",
                      "precision"}
    }

Event tasks also get ``test.events.json`` (schema ``hear-atst-events/1``): the events of the first seed's first fold,
predicted by its best checkpoint under the post-processing chosen on validation, next to the reference events of
that test split, for every test file (times in ms, labels as strings, each list sorted by start)::

    {
      "schema": "hear-atst-events/1",
      "task": "dcase2016_task2",
      "fold": "test",                                          # the test split(s), "|"-joined
      "seed": 0,
      "postprocessing": {"median_filter_ms": 250, "min_duration": 125},
      "files": {"<file>": {"predicted": [{"label", "start", "end"}, ...], "reference": [...]}}
    }
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hear_atst.atomic import write_text_atomic

DEFAULT_EMBEDDINGS_DIR = "embeddings"  # the embed stage's output (the HEAR kit's layout), unless told otherwise
DEFAULT_RESULTS_DIR = "results/runs"  # <model_id>/<task folder>/<run name>/results.json
RESULTS_SCHEMA = "hear-atst-results/1"
RESULTS_FILENAME = "results.json"
PREDICTED_SCORES_FILENAME = "test.predicted-scores.json"
EVENTS_SCHEMA = "hear-atst-events/1"
EVENTS_FILENAME = "test.events.json"

Event = dict[str, Any]  # {"label": str, "start": float ms, "end": float ms}


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON (NaN/inf as null) atomically."""
    write_text_atomic(path, json.dumps(_finite_or_none(data), indent=2) + "\n")


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def read_tagged_json(path: str | os.PathLike[str], schema: str, what: str) -> dict[str, Any]:
    """Read a JSON object whose ``schema`` tag must be ``schema``; ValueError naming the file (``what``: its kind)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable {what}: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != schema:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: schema {found!r}, expected {schema!r}")
    return data


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``results.json``, checking its schema tag."""
    return read_tagged_json(path, RESULTS_SCHEMA, "results file")


@dataclass(frozen=True)
class FoldEvents:
    """Predicted and reference events of one test split, per file (the content of ``test.events.json``)."""

    task: str
    fold: str
    seed: int
    postprocessing: dict[str, float] | None
    files: dict[str, dict[str, list[Event]]]  # file -> {"predicted": [...], "reference": [...]}

    @classmethod
    def build(cls, task: str, fold: str, seed: int, postprocessing: dict[str, float] | None,
              predicted: Mapping[str, Sequence[Mapping[str, Any]]],
              reference: Mapping[str, Sequence[Mapping[str, Any]]]) -> FoldEvents:
        """Pair every file's predicted and reference events (a file missing on one side gets ``[]``)."""
        names = sorted({*predicted, *reference})
        files = {name: {"predicted": _normalised(predicted.get(name, [])),
                        "reference": _normalised(reference.get(name, []))} for name in names}
        return cls(task, fold, seed, postprocessing, files)

    def to_json(self) -> dict[str, Any]:
        return {"schema": EVENTS_SCHEMA, "task": self.task, "fold": self.fold, "seed": self.seed,
                "postprocessing": self.postprocessing, "files": self.files}


def _normalised(events: Sequence[Mapping[str, Any]]) -> list[Event]:
    """Events as plain JSON values (string label, float ms), stably sorted by start."""
    plain = [{"label": str(e["label"]), "start": float(e["start"]), "end": float(e["end"])} for e in events]
    return sorted(plain, key=lambda event: event["start"])


def read_events(path: str | os.PathLike[str]) -> FoldEvents:
    """Read a ``test.events.json``, checking its schema tag and shape."""
    data = read_tagged_json(path, EVENTS_SCHEMA, "events file")
    try:
        files = {name: {side: _normalised(entry[side]) for side in ("predicted", "reference")}
                 for name, entry in data["files"].items()}
        return FoldEvents(str(data["task"]), str(data["fold"]), int(data["seed"]), data["postprocessing"], files)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path}: events file lacks a required field ({error!r})") from None
