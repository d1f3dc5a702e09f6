"""Score functions, named and defined as hear-eval-kit 2021.1.3 defines them (``heareval/score.py``).

Scene scores take ``predictions`` [N, C] (probabilities) and ``targets`` [N, C] (one- or multi-hot) and
return a float. Event scores take ``predicted`` and ``reference`` as ``{file: [{"label", "start", "end"}]}``
(milliseconds) and return an ordered ``{subscore: value}`` whose first entry is the score's value, as the
kit's tuple-returning sed_eval scores do.

Event scores have two backends: ``"sed_eval"`` (the reference: sed_eval run file by file, exactly as the
kit calls it) and ``"fast"`` (vectorised counts for the onset-only F-measures and the 1 s segment error
rate; ``tests/test_scores.py`` proves it equals sed_eval on real predictions). The onset+offset F-measure
always uses sed_eval. PSDS (psds_eval) is an extra event score that the kit does not have.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

EventMap = Mapping[str, Sequence[Mapping[str, Any]]]
_EPS = float(np.spacing(1))  # sed_eval's eps in the error-rate denominators


# --------------------------------------------------------------------------------------------- scene scores


def top1_acc(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Share of rows whose argmax prediction is the argmax of the one-hot target."""
    return float(np.mean(np.argmax(predictions, axis=1) == np.argmax(targets, axis=1)))


def chroma_acc(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Pitch accuracy ignoring octave errors: ``argmax % 12`` must agree."""
    return float(np.mean(np.argmax(predictions, axis=1) % 12 == np.argmax(targets, axis=1) % 12))


def mean_average_precision(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Macro average precision (sklearn ``average_precision_score(average="macro")``); NaN when a class has no
    positive row, as under the scikit-learn of the kit's runs (< 1.1 divided 0 by 0; later versions score such a
    class 0, which would pull the mean down)."""
    if not np.asarray(targets).any(axis=0).all():
        return math.nan
    return float(average_precision_score(targets, predictions, average="macro"))


def d_prime(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes of ``norm.ppf(auc) * sqrt(2)``; NaN when sklearn cannot compute a class AUC."""
    try:
        auc = roc_auc_score(targets, predictions, average=None)
    except ValueError:
        return math.nan
    return float(np.mean(stats.norm().ppf(auc) * np.sqrt(2.0)))


def aucroc(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Macro ROC AUC; NaN when sklearn raises (e.g. a class without positives)."""
    try:
        return float(roc_auc_score(targets, predictions, average="macro"))
    except ValueError:
        return math.nan


# --------------------------------------------------------------------------------------------- event scores


def _sed_eval_container(events: EventMap) -> Any:
    from dcase_util.containers import MetaDataContainer

    return MetaDataContainer(
        [
            {
                "event_label": str(event["label"]),
                "event_onset": event["start"] / 1000.0,
                "event_offset": event["end"] / 1000.0,
                "file": filename,
            }
            for filename, file_events in events.items()
            for event in file_events
        ]
    )


def sed_eval_scores(
    kind: str, params: Mapping[str, Any], subscores: Sequence[str], predicted: EventMap, reference: EventMap,
    labels: Sequence[Any],
) -> dict[str, float]:
    """The kit's ``SoundEventScore``: sed_eval evaluated file by file over every predicted file."""
    import sed_eval

    metric_class = {"event": sed_eval.sound_event.EventBasedMetrics,
                    "segment": sed_eval.sound_event.SegmentBasedMetrics}[kind]
    reference_list = _sed_eval_container(reference)
    estimated_list = _sed_eval_container(predicted)
    metrics = metric_class(event_label_list=[str(label) for label in labels], **params)
    for filename in predicted:
        metrics.evaluate(
            reference_event_list=reference_list.filter(filename=filename),
            estimated_event_list=estimated_list.filter(filename=filename),
        )
    overall: dict[str, float] = {}
    for group in reversed(list(metrics.results_overall_metrics().values())):  # ChainMap order: first wins
        overall.update(group)
    return {name: float(overall[name]) for name in subscores}


def _onsets_by_label(events: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    grouped: dict[str, list[float]] = {}
    for event in events:
        grouped.setdefault(str(event["label"]), []).append(event["start"] / 1000.0)
    return {label: np.sort(np.asarray(onsets, dtype=np.float64)) for label, onsets in grouped.items()}


def _matched_onsets(reference: np.ndarray, estimated: np.ndarray, collar: float) -> int:
    """Size of a maximum matching of sorted onsets with ``|ref - est| <= collar``.

    Neighbourhoods are contiguous and monotone in sorted order, so the greedy two-pointer sweep is optimal
    (it equals sed_eval's ``optimal`` bipartite matching count).
    """
    matched = i = j = 0
    while i < len(reference) and j < len(estimated):
        if math.fabs(reference[i] - estimated[j]) <= collar:
            matched, i, j = matched + 1, i + 1, j + 1
        elif estimated[j] < reference[i]:
            j += 1
        else:
            i += 1
    return matched


def _precision_recall_f(tp: float, n_sys: float, n_ref: float) -> dict[str, float]:
    """sed_eval's ``metric.precision/recall/f_measure`` (NaN precision when nothing was detected)."""
    precision = math.nan if n_sys == 0 else float(tp / float(n_sys))
    recall = math.nan if n_ref == 0 else float(tp / float(n_ref))
    f_measure = 0.0 if precision == 0 and recall == 0 else float(2 * precision * recall / (precision + recall))
    return {"f_measure": f_measure, "precision": precision, "recall": recall}


def fast_onset_scores(predicted: EventMap, reference: EventMap, collar: float) -> dict[str, float]:
    """Onset-only event-based F-measure / precision / recall, micro over every predicted file."""
    tp = n_sys = n_ref = 0
    for filename, file_events in predicted.items():
        estimated = _onsets_by_label(file_events)
        references = _onsets_by_label(reference.get(filename, []))
        n_sys += len(file_events)
        n_ref += len(reference.get(filename, []))
        for label, onsets in references.items():
            if label in estimated:
                tp += _matched_onsets(onsets, estimated[label], collar)
    return _precision_recall_f(tp, n_sys, n_ref)


def _event_roll(events: Sequence[Mapping[str, Any]], label_index: Mapping[str, int], resolution: float) -> np.ndarray:
    """sed_eval's ``event_list_to_event_roll``: floor(onset)..ceil(offset) segments set to 1."""
    max_offset = 0.0
    for event in events:
        max_offset = max(max_offset, event["end"] / 1000.0)
    roll = np.zeros((math.ceil(max_offset / resolution), len(label_index)), dtype=np.int64)
    for event in events:
        onset = math.floor(event["start"] / 1000.0 / resolution)
        offset = math.ceil(event["end"] / 1000.0 / resolution)
        roll[onset:offset, label_index[str(event["label"])]] = 1
    return roll


def fast_segment_scores(
    predicted: EventMap, reference: EventMap, labels: Sequence[Any], resolution: float = 1.0
) -> dict[str, float]:
    """Segment-based overall error rate (and its parts), as sed_eval's ``SegmentBasedMetrics``."""
    label_index = {str(label): index for index, label in enumerate(labels)}
    subs = deletions = insertions = n_ref = 0
    for filename, file_events in predicted.items():
        ref_roll = _event_roll(reference.get(filename, []), label_index, resolution)
        est_roll = _event_roll(file_events, label_index, resolution)
        length = max(ref_roll.shape[0], est_roll.shape[0])
        ref = np.zeros((length, len(label_index)), dtype=np.int64)
        est = np.zeros_like(ref)
        ref[: ref_roll.shape[0]] = ref_roll
        est[: est_roll.shape[0]] = est_roll
        tp = np.sum((ref + est) > 1, axis=1)
        n_ref_seg, n_sys_seg = ref.sum(axis=1), est.sum(axis=1)
        subs += int(np.sum(np.minimum(n_ref_seg, n_sys_seg) - tp))
        deletions += int(np.sum(np.maximum(0, n_ref_seg - n_sys_seg)))
        insertions += int(np.sum(np.maximum(0, n_sys_seg - n_ref_seg)))
        n_ref += int(n_ref_seg.sum())
    substitution_rate = float(subs / (n_ref + _EPS))
    deletion_rate = float(deletions / (n_ref + _EPS))
    insertion_rate = float(insertions / (n_ref + _EPS))
    return {
        "error_rate": float(substitution_rate + deletion_rate + insertion_rate),
        "substitution_rate": substitution_rate,
        "deletion_rate": deletion_rate,
        "insertion_rate": insertion_rate,
    }


# --------------------------------------------------------------------------------------------- PSDS (extra)

PSDS1 = {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": 0.3, "alpha_ct": 0.0, "alpha_st": 1.0,
         "max_efpr": 100.0}
"""DCASE 2021-2023 task 4 scenario 1 settings."""


def _psds_eval_class() -> type:
    """psds_eval's ``PSDSEval`` with two static helpers ported to pandas 3 / NumPy 2.

    psds_eval 0.5.3 calls ``DataFrame.fillna(method="ffill")`` (removed in pandas 3) in ``step_curve`` and
    ``int()`` of a 2-D array (an error in NumPy 2) in ``_auc``. The overrides compute the same values:
    the step curve (max y per x, cumulative max, outer merge on x, forward fill, then 0) and the area under a
    step curve up to ``max_x`` (``max_x`` inserted with the preceding y, widths times left heights).
    """
    import pandas as pd
    from psds_eval import PSDSEval, PSDSEvalError

    class _PSDSEval(PSDSEval):
        @staticmethod
        def step_curve(x: np.ndarray, xp: np.ndarray, yp: np.ndarray) -> np.ndarray:
            roc = pd.DataFrame({"x": xp, "y": yp}).groupby("x").agg("max").reset_index().sort_values(by="x")
            if x.size < roc.x.size:
                raise PSDSEvalError(f"x: {x.size}, xp: {xp.size}")
            roc["y"] = roc["y"].cummax()
            merged = pd.merge(pd.Series(x, name="x"), roc, how="outer", on="x").ffill().fillna(value=0)
            return merged.y.values

        @staticmethod
        def _auc(x: np.ndarray, y: np.ndarray, max_x: float | None = None, decreasing_y: bool = False) -> float:
            if np.any(np.diff(x) < 0) or (not decreasing_y and np.any(np.diff(y) < 0)):
                raise PSDSEvalError("the curve must be non-decreasing")
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            max_x = float(x.max()) if max_x is None else float(max_x)
            if max_x not in x:
                position = int(np.searchsorted(x, max_x))
                x = np.insert(x, position, max_x)
                y = np.insert(y, position, y[position - 1])
            valid = x <= max_x
            return float(np.sum(np.diff(x[valid]) * y[valid][:-1]))

    return _PSDSEval


def merge_overlapping(events: EventMap) -> EventMap:
    """Each file's events with overlapping (not merely touching) events of one label merged into their union."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for name, file_events in events.items():
        out: list[dict[str, Any]] = []
        last: dict[str, dict[str, Any]] = {}
        for event in sorted(file_events, key=lambda e: (str(e["label"]), e["start"], e["end"])):
            previous = last.get(str(event["label"]))
            if previous is not None and event["start"] < previous["end"]:
                previous["end"] = max(previous["end"], event["end"])
                continue
            last[str(event["label"])] = dict(event)
            out.append(last[str(event["label"])])
        merged[name] = out
    return merged


def psds(
    operating_points: Sequence[EventMap], reference: EventMap, durations_s: Mapping[str, float],
    labels: Sequence[Any], settings: Mapping[str, float] = PSDS1,
) -> float:
    """Polyphonic Sound Detection Score over a set of operating points (one event map per threshold).

    psds_eval needs reference events for every class it scores and refuses overlapping reference events of one
    label, so the score is over the labels that occur in ``reference`` (detections of the other labels are not
    counted) and overlapping reference events of one label are merged into one. NaN when no label occurs, or only
    one while ``alpha_st`` > 0 (the across-class standard deviation it weighs is undefined for one class).
    """
    import pandas as pd

    def frame(events: EventMap) -> pd.DataFrame:
        rows = [(name, e["start"] / 1000.0, e["end"] / 1000.0, str(e["label"]))
                for name, file_events in events.items() for e in file_events if e["end"] > e["start"]]
        return pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])

    ground_truth = frame(merge_overlapping(reference))
    present = set(ground_truth.event_label)
    scored = [str(label) for label in labels if str(label) in present]
    if len(scored) < (2 if settings["alpha_st"] > 0 else 1):
        return math.nan
    metadata = pd.DataFrame(sorted(durations_s.items()), columns=["filename", "duration"])
    evaluator = _psds_eval_class()(
        dtc_threshold=settings["dtc_threshold"], gtc_threshold=settings["gtc_threshold"],
        cttc_threshold=settings["cttc_threshold"], ground_truth=ground_truth, metadata=metadata,
        class_names=scored,
    )
    with warnings.catch_warnings():  # thresholds that give the same detections: psds_eval keeps one, and says so
        warnings.filterwarnings("ignore", message="A similar operating point exists", category=UserWarning)
        for events in operating_points:
            evaluator.add_operating_point(frame(events))
    result = evaluator.psds(alpha_ct=settings["alpha_ct"], alpha_st=settings["alpha_st"],
                            max_efpr=settings["max_efpr"])
    return float(result.value)


# --------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ScoreSpec:
    """One named score: whether it is a scene or event score, its direction and how to compute it."""

    name: str
    kind: str  # "scene" | "event"
    maximize: bool = True
    scene_fn: Callable[[np.ndarray, np.ndarray], float] | None = None
    sed_kind: str = ""  # "event" | "segment"
    sed_params: dict[str, Any] = field(default_factory=dict)
    subscores: tuple[str, ...] = ()

    def event(self, predicted: EventMap, reference: EventMap, labels: Sequence[Any],
              backend: str = "fast") -> dict[str, float]:
        """Subscores of an event score, first = the score's value."""
        if self.kind != "event":
            raise ValueError(f"{self.name} is a scene score")
        if backend not in ("fast", "sed_eval"):
            raise ValueError(f"unknown event scoring backend {backend!r} (fast | sed_eval)")
        if backend == "fast" and self.sed_kind == "event" and not self.sed_params["evaluate_offset"]:
            result = fast_onset_scores(predicted, reference, self.sed_params["t_collar"])
        elif backend == "fast" and self.sed_kind == "segment":
            result = fast_segment_scores(predicted, reference, labels, self.sed_params["time_resolution"])
        else:
            return sed_eval_scores(self.sed_kind, self.sed_params, self.subscores, predicted, reference, labels)
        return {name: result[name] for name in self.subscores}

    def scene(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        if self.scene_fn is None:
            raise ValueError(f"{self.name} is an event score")
        return self.scene_fn(predictions, targets)


_FMS = ("f_measure", "precision", "recall")
SCORES: dict[str, ScoreSpec] = {
    spec.name: spec
    for spec in (
        ScoreSpec("top1_acc", "scene", scene_fn=top1_acc),
        ScoreSpec("pitch_acc", "scene", scene_fn=top1_acc),
        ScoreSpec("chroma_acc", "scene", scene_fn=chroma_acc),
        ScoreSpec("mAP", "scene", scene_fn=mean_average_precision),
        ScoreSpec("d_prime", "scene", scene_fn=d_prime),
        ScoreSpec("aucroc", "scene", scene_fn=aucroc),
        ScoreSpec("event_onset_200ms_fms", "event", sed_kind="event", subscores=_FMS,
                  sed_params={"evaluate_onset": True, "evaluate_offset": False, "t_collar": 0.2}),
        ScoreSpec("event_onset_50ms_fms", "event", sed_kind="event", subscores=_FMS,
                  sed_params={"evaluate_onset": True, "evaluate_offset": False, "t_collar": 0.05}),
        ScoreSpec("event_onset_offset_50ms_20perc_fms", "event", sed_kind="event", subscores=_FMS,
                  sed_params={"evaluate_onset": True, "evaluate_offset": True, "t_collar": 0.05,
                              "percentage_of_length": 0.2}),
        ScoreSpec("segment_1s_er", "event", maximize=False, sed_kind="segment", subscores=("error_rate",),
                  sed_params={"time_resolution": 1.0}),
    )
}


def get_score(name: str) -> ScoreSpec:
    """The spec of a kit score name, or a ValueError listing the known names."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; known: {', '.join(SCORES)}")
    return SCORES[name]
