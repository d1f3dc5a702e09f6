"""Hand-written ``results.json`` files (schema ``hear-atst-results/1``) for the leaderboard and regression tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.results import RESULTS_FILENAME, RESULTS_SCHEMA, write_json_atomic


def make_results(
    model_id: str,
    task_name: str,
    folder: str,
    fold_scores: dict[str, float],
    *,
    protocol: str = "hear",
    metric: str = "top1_acc",
    higher_is_better: bool = True,
    date: str = "2026-11-22T10:00:00+00:00",
    weights_sha256: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A complete results dict with one seed; ``score`` is the mean / sample std of ``fold_scores``."""
    values = list(fold_scores.values())
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
    summary = {"mean": mean, "std": std, "ci95": [mean - 0.01, mean + 0.01] if std else None, "n": len(values)}
    return {
        "schema": RESULTS_SCHEMA,
        "date": date,
        "model": {
            "id": model_id,
            "name": model_id.split("-")[0],
            "module": f"hear_atst.{model_id.split('-')[0]}",
            "options": {},
            "weights": None,
            "weights_sha256": weights_sha256,
        },
        "task": {
            "name": task_name,
            "folder": folder,
            "embedding_type": "scene",
            "prediction_type": "multiclass",
            "split_mode": "new_split_kfold" if len(values) > 1 else "trainvaltest",
            "evaluation": [metric],
        },
        "protocol": {"name": protocol, "shuffle": True, "grid_points": 8, "seeds": [seed]},
        "primary_score": metric,
        "higher_is_better": higher_is_better,
        "score": summary,
        "scores": {metric: summary},
        "runs": [
            {
                "seed": seed,
                "selected_hyperparameters": {"lr": 0.001},
                "folds": {
                    fold: {"scores": {metric: value}, "validation_score": value, "epoch": 30, "postprocessing": None}
                    for fold, value in fold_scores.items()
                },
            }
        ],
        "timing_s": {"embed": 1.0, "probe": 2.0, "total": 3.0},
        "environment": {"hear_atst": "0.1.0", "python": "3.11", "device": "cpu", "precision": "fp32"},
    }


def write_results(results_dir: Path, data: dict[str, Any], run: str = "", probe: str | None = None) -> Path:
    """Write ``data`` where the runner would: ``<results_dir>/[<run>/]<model_id>/<task_folder>/<probe>/results.json``
    (``<probe>`` by default the protocol name, as :attr:`ProbeConfig.run_name` gives for default settings)."""
    probe = data["protocol"]["name"] if probe is None else probe  # "": the oldest layout, no probe folder
    folder = results_dir / run / data["model"]["id"] / data["task"]["folder"] / probe
    path = folder / RESULTS_FILENAME
    write_json_atomic(path, data)
    return path
