"""Independent oracles for event-task runs: the kit's post-processing restated plainly (hear_eval.md §3.4) and the
kit's scores computed by sed_eval itself (§3.6), called directly on plain per-file event lists.

Nothing here imports the project's event or score code: the end-to-end tests hold a run's recorded numbers against
these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Events = Mapping[str, Sequence[Mapping]]  # file -> [{"label", "start", "end"}] (ms)


def _median_filtered(column: np.ndarray, width: int) -> np.ndarray:
    """scipy ``median_filter`` of one class over time, restated: window ``i - width//2 .. i - width//2 + width - 1``,
    edges mirrored (``d c b a | a b c d``), the element of sorted rank ``width // 2`` (the upper middle when even)."""
    padded = np.pad(column, (width // 2, width - 1 - width // 2), mode="symmetric")
    return np.sort(sliding_window_view(padded, width), axis=1)[:, width // 2]


def kit_events(filenames: Sequence[str], timestamps: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
               median_filter_ms: float, min_duration: float) -> dict[str, list[dict]]:
    """``create_events_from_prediction`` per file: frames sorted by time, median filter of ``round(median_filter_ms /
    mean hop)`` frames, ``p > 0.5``, each run of active frames one event from its first to its last timestamp, runs
    shorter than ``min_duration`` dropped. Events sorted by (start, label)."""
    out: dict[str, list[dict]] = {}
    names = np.asarray(filenames)
    for name in dict.fromkeys(filenames):
        rows = np.nonzero(names == name)[0]
        rows = rows[np.argsort(timestamps[rows], kind="stable")]
        times = np.asarray(timestamps[rows], dtype=np.float64)
        width = round(median_filter_ms / float(np.mean(np.diff(times)))) if len(times) > 1 else 0
        events = []
        for c, label in enumerate(labels):
            column = np.asarray(probabilities[rows, c])
            active = (_median_filtered(column, width) if width else column) > 0.5
            first = None
            for i, on in enumerate([*active, False]):
                if on and first is None:
                    first = i
                elif not on and first is not None:
                    if times[i - 1] - times[first] >= min_duration:
                        events.append({"label": label, "start": float(times[first]), "end": float(times[i - 1])})
                    first = None
        out[str(name)] = sorted(events, key=lambda e: (e["start"], e["label"]))
    return out


def _seconds(events: Sequence[Mapping]) -> list[dict]:
    return [{"event_label": str(e["label"]), "onset": e["start"] / 1000.0, "offset": e["end"] / 1000.0}
            for e in events]


def sed_eval_kit_scores(predicted: Events, reference: Events, labels: Sequence[str]) -> dict[str, float]:
    """The kit's event_onset_200ms_fms (F, precision, recall) and segment_1s_er, by sed_eval, file by file over
    every predicted file: ``EventBasedMetrics(t_collar=0.2, percentage_of_length=0.5, onset only)`` and
    ``SegmentBasedMetrics(time_resolution=1.0)``, overall (micro) results."""
    import sed_eval

    onset = sed_eval.sound_event.EventBasedMetrics(event_label_list=list(labels), t_collar=0.2,
                                                   percentage_of_length=0.5, evaluate_onset=True,
                                                   evaluate_offset=False)
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=list(labels), time_resolution=1.0)
    for name, estimated in predicted.items():
        for metrics in (onset, segment):
            metrics.evaluate(reference_event_list=_seconds(reference.get(name, [])),
                             estimated_event_list=_seconds(estimated))
    fms = onset.results_overall_metrics()["f_measure"]
    return {"event_onset_200ms_fms": fms["f_measure"], "event_onset_200ms_fms_precision": fms["precision"],
            "event_onset_200ms_fms_recall": fms["recall"],
            "segment_1s_er": segment.results_overall_metrics()["error_rate"]["error_rate"]}
