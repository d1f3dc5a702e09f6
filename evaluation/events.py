"""Frame predictions -> events, and the post-processing grid chosen on validation (hear-eval-kit §3.4).

Per file (``create_events_from_prediction`` in the kit): frames sorted by timestamp; a median filter
over time of width ``round(median_filter_ms / mean(diff(timestamps)))`` frames
(``scipy.ndimage.median_filter``, size ``(w, 1)``, skipped when the width rounds to 0); binarised with
``p > 0.5`` (other thresholds only for PSDS operating points); every run of active frames of a class becomes
one event ``start = t_first, end = t_last`` (not extended by a hop); events with ``end - start <
min_duration`` are dropped; events are sorted by start (stable, label-major before that).

Differences from the kit, deliberate and tested: a file with a single frame is not median-filtered (the kit
takes the mean of an empty diff and crashes), and when the primary score is minimised the best setting is
the lowest one (the kit always sorts descending; no HEAR task has a minimised primary event score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import median_filter
from sklearn.model_selection import ParameterGrid

from evaluation.scores import EventMap, ScoreSpec

THRESHOLD = 0.5
DEFAULT_POSTPROCESSING_GRID: dict[str, list[float]] = {"median_filter_ms": [250], "min_duration": [125, 250]}
Setting = tuple[tuple[str, float], ...]  # the kit's ``tuple(dict.items())`` of one ParameterGrid point


def postprocessing_settings(metadata: Mapping[str, Any]) -> list[Setting]:
    """The task's post-processing grid (``evaluation_params.event_postprocessing_grid`` or the default)."""
    grid = metadata.get("evaluation_params", {}).get("event_postprocessing_grid", DEFAULT_POSTPROCESSING_GRID)
    return [tuple(point.items()) for point in ParameterGrid(grid)]


def _filter_width(timestamps: np.ndarray, median_filter_ms: float) -> int:
    if not median_filter_ms or len(timestamps) < 2:
        return 0
    return round(median_filter_ms / float(np.mean(np.diff(timestamps))))


def _active(probabilities: np.ndarray, timestamps: np.ndarray, median_filter_ms: float,
            threshold: float = THRESHOLD) -> np.ndarray:
    width = _filter_width(timestamps, median_filter_ms)
    if width:
        probabilities = median_filter(probabilities, size=(width, 1))
    return probabilities > threshold


def _runs(active: np.ndarray, timestamps: np.ndarray, labels: Sequence[Any], min_duration: float) -> list[dict]:
    """Runs of active frames per class -> events, label-major, then stably sorted by start."""
    padded = np.zeros((active.shape[1], active.shape[0] + 2), dtype=np.int8)
    padded[:, 1:-1] = active.T
    steps = np.diff(padded, axis=1)
    classes, starts = np.nonzero(steps == 1)
    _, stops = np.nonzero(steps == -1)  # exclusive; same class-major order as the starts
    begin, end = timestamps[starts], timestamps[stops - 1]
    keep = (end - begin) >= min_duration
    events = [
        {"label": labels[c], "start": float(b), "end": float(e)}
        for c, b, e in zip(classes[keep], begin[keep], end[keep], strict=True)
    ]
    events.sort(key=lambda event: event["start"])
    return events


def events_from_frames(
    probabilities: np.ndarray, timestamps: np.ndarray, labels: Sequence[Any], median_filter_ms: float,
    min_duration: float,
) -> list[dict]:
    """Events of one file from its frame probabilities [T, C] at ``timestamps`` [T] (ms, any order)."""
    order = np.argsort(timestamps, kind="stable")
    times = np.asarray(timestamps, dtype=np.float64)[order]
    active = _active(np.asarray(probabilities)[order], times, median_filter_ms)
    return _runs(active, times, labels, min_duration)


@dataclass
class FrameLayout:
    """Where each file's frames sit in a split's rows, sorted by timestamp: built once, used every check."""

    files: list[str]
    rows: list[np.ndarray]  # per file: row indices in timestamp order
    times: list[np.ndarray]  # per file: sorted timestamps (ms)

    @classmethod
    def from_rows(cls, filenames: Sequence[str], timestamps: np.ndarray) -> FrameLayout:
        names = np.asarray(filenames)
        files = list(dict.fromkeys(filenames))
        times_all = np.asarray(timestamps, dtype=np.float64)
        rows, times = [], []
        for name in files:
            index = np.nonzero(names == name)[0]
            index = index[np.argsort(times_all[index], kind="stable")]
            rows.append(index)
            times.append(times_all[index])
        return cls(files, rows, times)

    def events(self, probabilities: np.ndarray, labels: Sequence[Any], setting: Setting,
               threshold: float = THRESHOLD) -> dict[str, list[dict]]:
        """``{file: events}`` for every file of the split under one post-processing setting."""
        return self.events_for_settings(probabilities, labels, [setting], threshold)[setting]

    def events_for_settings(
        self, probabilities: np.ndarray, labels: Sequence[Any], settings: Sequence[Setting],
        threshold: float = THRESHOLD,
    ) -> dict[Setting, dict[str, list[dict]]]:
        """Events under several settings, median-filtering once per distinct filter width."""
        out: dict[Setting, dict[str, list[dict]]] = {setting: {} for setting in settings}
        for name, rows, times in zip(self.files, self.rows, self.times, strict=True):
            frames = probabilities[rows]
            active_by_filter: dict[float, np.ndarray] = {}
            for setting in settings:
                params = dict(setting)
                filter_ms = params["median_filter_ms"]
                if filter_ms not in active_by_filter:
                    active_by_filter[filter_ms] = _active(frames, times, filter_ms, threshold)
                out[setting][name] = _runs(active_by_filter[filter_ms], times, labels, params["min_duration"])
        return out


def select_postprocessing(
    layout: FrameLayout, probabilities: np.ndarray, reference: EventMap, labels: Sequence[Any],
    settings: Sequence[Setting], score: ScoreSpec, backend: str = "fast",
) -> tuple[Setting, float]:
    """The best setting by the primary score, and that setting's score as computed (the kit's monitored value).

    Selection counts a NaN score as 0 (the kit's rule, for the scores it maximises; a minimised score counts NaN as
    its worst, +inf) and breaks ties by the kit's descending tuple order; the returned value is the chosen setting's
    own score, NaN included (the kit logs the recomputed score, not the 0 it sorted by)."""
    candidates, raw = [], {}
    for setting, predicted in layout.events_for_settings(probabilities, labels, settings).items():
        raw[setting] = next(iter(score.event(predicted, reference, labels, backend).values()))
        value = (0.0 if score.maximize else math.inf) if math.isnan(raw[setting]) else raw[setting]
        candidates.append((value if score.maximize else -value, setting))
    candidates.sort(reverse=True)
    best_setting = candidates[0][1]
    return best_setting, raw[best_setting]
