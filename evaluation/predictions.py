"""Per-clip test predictions of a run: ``test.predictions.npz`` (arrays) and ``test.predictions.json`` (what they mean).

One row per test clip (scene tasks) or per test frame (event tasks), for every (seed, fold) of the run, in run order
(seeds, then folds, then the test split's rows in embedding order). The NPZ (``numpy.load(..., allow_pickle=False)``
reads it) holds::

    filename       str [R]        the clip's file name (as in <split>.json)
    fold           str [R]        the test split(s) of the fold, "|"-joined ("test", "fold00", ...)
    seed           int64 [R]
    timestamp      float64 [R]    ms, event tasks; NaN for scene tasks
    probabilities  float32 [R, C] the probe's label probabilities (softmax for multiclass, sigmoid otherwise)
    logits         float32 [R, C]
    target         uint8 [R, C]   the reference labels, one- or multi-hot

and the JSON (schema ``hear-atst-predictions/1``)::

    {"schema": "hear-atst-predictions/1", "task": str, "embedding_type": "scene"|"event",
     "prediction_type": "multiclass"|"multilabel", "labels": [str, ...],   # column order of the arrays
     "rows": int, "arrays": "test.predictions.npz",
     "folds": [{"seed": int, "fold": str, "postprocessing": {...}|null}, ...]}   # event tasks: the setting chosen

:func:`read_predictions` reads both back; :meth:`TestPredictions.kit_predictions` gives the content of the HEAR kit's
``<fold>.predictions.pkl`` for one (seed, fold) (target, prediction, logits and, for event tasks, timestamps and
the post-processed events), from which every test score can be recomputed.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.events import FrameLayout
from evaluation.results import read_tagged_json, write_json_atomic
from hear_atst.atomic import write_bytes_atomic

PREDICTIONS_SCHEMA = "hear-atst-predictions/1"
PREDICTIONS_ARRAYS = "test.predictions.npz"
PREDICTIONS_FILENAME = "test.predictions.json"
ARRAYS = ("filename", "fold", "seed", "timestamp", "probabilities", "logits", "target")


@dataclass
class FoldPredictions:
    """One (seed, fold)'s test rows: what the probe stage hands to :meth:`TestPredictions.join`."""

    seed: int
    fold: str
    postprocessing: dict[str, float] | None
    files: Sequence[str]
    timestamps: np.ndarray | None
    probabilities: np.ndarray
    logits: np.ndarray
    target: np.ndarray


@dataclass
class TestPredictions:
    """Every (seed, fold)'s test predictions of one run (see the module docstring for the fields)."""

    task: str
    embedding_type: str
    prediction_type: str
    labels: list[str]
    folds: list[dict[str, Any]]  # {"seed", "fold", "postprocessing"} in run order
    filename: np.ndarray
    fold: np.ndarray
    seed: np.ndarray
    timestamp: np.ndarray
    probabilities: np.ndarray
    logits: np.ndarray
    target: np.ndarray

    @classmethod
    def join(cls, task: str, embedding_type: str, prediction_type: str, labels: Sequence[str],
             parts: Sequence[FoldPredictions]) -> TestPredictions:
        """Stack the (seed, fold) parts in the order given."""
        def rows(part: FoldPredictions) -> int:
            return len(part.files)

        return cls(
            task, embedding_type, prediction_type, [str(label) for label in labels],
            [{"seed": p.seed, "fold": p.fold, "postprocessing": p.postprocessing} for p in parts],
            filename=np.asarray([f for p in parts for f in p.files], dtype=str),
            fold=np.asarray([p.fold for p in parts for _ in range(rows(p))], dtype=str),
            seed=np.asarray([p.seed for p in parts for _ in range(rows(p))], dtype=np.int64),
            timestamp=np.concatenate([p.timestamps if p.timestamps is not None else np.full(rows(p), math.nan)
                                      for p in parts]).astype(np.float64),
            probabilities=np.concatenate([p.probabilities for p in parts]).astype(np.float32),
            logits=np.concatenate([p.logits for p in parts]).astype(np.float32),
            target=np.concatenate([p.target for p in parts]).astype(np.uint8),
        )

    def select(self, seed: int, fold: str) -> np.ndarray:
        """Row mask of one (seed, fold); KeyError when the run has no such pair."""
        if not any(entry["seed"] == seed and entry["fold"] == fold for entry in self.folds):
            raise KeyError(f"{self.task}: no predictions for seed {seed}, fold {fold!r}")
        return (self.seed == seed) & (self.fold == fold)

    def kit_predictions(self, seed: int, fold: str) -> dict[str, Any]:
        """The HEAR kit's ``<fold>.predictions.pkl`` content of one (seed, fold): ``target``, ``prediction``
        (probabilities) and ``prediction_logit`` [N, C]; for event tasks also ``timestamp`` (ms), ``filename`` and
        ``predicted_events`` ({file: [{"label", "start", "end"}]}, post-processed with the fold's chosen setting)."""
        rows = self.select(seed, fold)
        out: dict[str, Any] = {"target": self.target[rows].astype(np.float32),
                               "prediction": self.probabilities[rows], "prediction_logit": self.logits[rows]}
        if self.embedding_type == "event":
            setting = next(e["postprocessing"] for e in self.folds if e["seed"] == seed and e["fold"] == fold)
            layout = FrameLayout.from_rows(list(self.filename[rows]), self.timestamp[rows])
            out.update(timestamp=self.timestamp[rows], filename=self.filename[rows],
                       predicted_events=layout.events(self.probabilities[rows], self.labels, tuple(setting.items())))
        return out

    def metadata(self) -> dict[str, Any]:
        return {"schema": PREDICTIONS_SCHEMA, "task": self.task, "embedding_type": self.embedding_type,
                "prediction_type": self.prediction_type, "labels": self.labels, "rows": len(self.filename),
                "arrays": PREDICTIONS_ARRAYS, "folds": self.folds}


def write_predictions(folder: str | os.PathLike[str], predictions: TestPredictions) -> Path:
    """Write ``test.predictions.npz`` then ``test.predictions.json`` into ``folder`` (each atomically); returns the
    JSON's path."""
    folder = Path(folder)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: getattr(predictions, name) for name in ARRAYS})
    write_bytes_atomic(folder / PREDICTIONS_ARRAYS, buffer.getvalue())
    path = folder / PREDICTIONS_FILENAME
    write_json_atomic(path, predictions.metadata())
    return path


def read_predictions(path: str | os.PathLike[str]) -> TestPredictions:
    """Read a run's test predictions: ``path`` is the run folder, its ``test.predictions.json`` or its
    ``test.predictions.npz``. ValueError naming the file when one is missing, of another schema or inconsistent."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = read_tagged_json(folder / PREDICTIONS_FILENAME, PREDICTIONS_SCHEMA, "predictions file")
    arrays_path = folder / str(meta.get("arrays", PREDICTIONS_ARRAYS))
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{arrays_path}: not a readable predictions array file: {error}") from None
    labels = [str(label) for label in meta["labels"]]
    shapes = {name: arrays[name].shape for name in ARRAYS}
    rows = int(meta["rows"])
    if any(shape[0] != rows for shape in shapes.values()) or any(
            shapes[name][1:] != (len(labels),) for name in ("probabilities", "logits", "target")):
        raise ValueError(f"{arrays_path}: array shapes {shapes} do not match {rows} rows x {len(labels)} labels")
    return TestPredictions(str(meta["task"]), str(meta["embedding_type"]), str(meta["prediction_type"]), labels,
                           list(meta["folds"]), **arrays)
