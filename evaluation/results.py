"""The results file of one (model, task) evaluation, and atomic JSON I/O.

Layout: ``<results_dir>/<model_id>/<task_folder>/results.json`` (this schema) next to the HEAR kit's
``test.predicted-scores.json``. ``model_id`` is the model name plus its options, e.g. ``atst_frame-blocks=1``.

``results.json`` (schema ``hear-atst-results/1``)::

    {
      "schema": "hear-atst-results/1",
      "date": "2026-11-22T10:00:00+00:00",
      "model": {"id", "name", "module", "options": {}, "weights": str|null, "weights_sha256": str|null},
      "task": {"name", "folder", "embedding_type", "prediction_type", "split_mode", "evaluation": [...]},
      "protocol": {"name": "hear"|"linear", "shuffle": bool, "grid_points": int|null, "seeds": [int, ...],
                   "precision": "fp32"|"bf16"},   # probe GEMMs
      "primary_score": "top1_acc",
      "higher_is_better": true,
      "score": {"mean", "std", "ci95": [lo, hi], "n"},         # the primary score over folds x seeds
      "scores": {"<metric>": {"mean", "std", "ci95", "n"}, ...},  # every metric the task lists
      "runs": [{"seed": 0,
                "selected_hyperparameters": {...},
                "folds": {"fold00": {"scores": {"<metric>": float}, "validation_score": float,
                                      "epoch": int, "postprocessing": {...}|null}}}],
      "timing_s": {"embed": float, "probe": float, "total": float},
      "environment": {"hear_atst", "python", "torch", "numpy", "scikit-learn", "sed_eval", "device", "precision"}
    }
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS_SCHEMA = "hear-atst-results/1"
RESULTS_FILENAME = "results.json"
PREDICTED_SCORES_FILENAME = "test.predicted-scores.json"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text via a temporary file and ``os.replace``: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        handle.write(text)
        tmp = Path(handle.name)
    tmp.chmod(0o644)  # NamedTemporaryFile creates 0600 files; results are meant to be read by others
    os.replace(tmp, path)


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


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``results.json``, checking its schema tag."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable results file: {error}") from None
    if data.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {RESULTS_SCHEMA!r}")
    return data
