"""Per-class views of a run's test predictions: where a model fails, not just one number.

``results.json`` gets ``class_scores`` (one entry per label, every value averaged over seeds; within a seed every
test fold's rows are pooled, so each test clip counts once):

- scene tasks: ``precision``, ``recall``, ``f_measure`` of the decisions (argmax for multiclass, probability > 0.5
  for multilabel), ``average_precision`` of the probabilities (one-vs-rest), and ``support`` (test clips with
  the label); ``f_measure`` is ``2 tp / (chosen + support)`` (0 for a label never chosen); a ratio with a zero
  denominator is NaN (null in JSON);
- event tasks: the onset-only event F-measure, precision and recall of each label's post-processed events, with
  the collar of the task's primary score when it has one (else 200 ms), and ``support`` (reference events);
- multiclass tasks also get ``confusion``: the first seed's counts, reference label by predicted label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from evaluation.scores import EventMap, fast_onset_scores

DEFAULT_COLLAR_S = 0.2


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else math.nan


def decisions(probabilities: np.ndarray, multilabel: bool) -> np.ndarray:
    """Boolean [N, C]: each row's argmax (multiclass) or every probability above 0.5 (multilabel)."""
    if multilabel:
        return probabilities > 0.5
    chosen = np.zeros(probabilities.shape, dtype=bool)
    chosen[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
    return chosen


def scene_class_scores(probabilities: np.ndarray, targets: np.ndarray, multilabel: bool) -> list[dict[str, float]]:
    """Per label: precision, recall, F-measure, average precision and support (see the module docstring)."""
    truth = targets.astype(bool)
    chosen = decisions(probabilities, multilabel)
    scores = []
    for label in range(truth.shape[1]):
        tp = int(np.sum(chosen[:, label] & truth[:, label]))
        precision = _ratio(tp, int(chosen[:, label].sum()))
        recall = _ratio(tp, int(truth[:, label].sum()))
        ap = float(average_precision_score(truth[:, label], probabilities[:, label])) if truth[:, label].any() \
            else math.nan
        f_measure = _ratio(2 * tp, int(chosen[:, label].sum()) + int(truth[:, label].sum()))  # 0 if never chosen
        scores.append({"precision": precision, "recall": recall, "f_measure": f_measure,
                       "average_precision": ap, "support": int(truth[:, label].sum())})
    return scores


def _of_label(events: EventMap, label: str) -> dict[str, list[Mapping[str, Any]]]:
    return {name: [e for e in file_events if str(e["label"]) == label] for name, file_events in events.items()}


def event_class_scores(predicted: EventMap, reference: EventMap, labels: Sequence[str], collar_s: float
                       ) -> list[dict[str, float]]:
    """Per label: onset-only event F-measure, precision and recall within ``collar_s``, and support."""
    scores = []
    for label in labels:
        mine, theirs = _of_label(predicted, label), _of_label(reference, label)
        result = fast_onset_scores(mine, theirs, collar_s)
        scores.append({**result, "support": sum(len(events) for events in theirs.values())})
    return scores


def confusion_matrix(probabilities: np.ndarray, targets: np.ndarray) -> list[list[int]]:
    """Counts [reference][predicted] of single-label rows."""
    size = targets.shape[1]
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (targets.argmax(axis=1), probabilities.argmax(axis=1)), 1)
    return counts.tolist()


def mean_over_seeds(per_seed: Sequence[list[dict[str, float]]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Each label's values averaged over seeds (NaN where every seed's is NaN); support from the first seed."""
    out = []
    for index, label in enumerate(labels):
        entry: dict[str, Any] = {"label": str(label)}
        for key, value in per_seed[0][index].items():
            if key == "support":
                entry[key] = value
                continue
            values = np.array([seed[index][key] for seed in per_seed], dtype=np.float64)
            entry[key] = float(np.nanmean(values)) if not np.isnan(values).all() else math.nan
        out.append(entry)
    return out
