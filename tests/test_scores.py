"""Scene scores against plain reimplementations of their definitions, event scores against sed_eval, on real
predictions; and the kit's NaN rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from event_oracle import sed_eval_kit_scores
from probe_helpers import dcase_scenes, dcase_task, esc10_task, least_squares_probabilities
from scipy import stats

from evaluation.events import FrameLayout, postprocessing_settings
from evaluation.scores import SCORES, chroma_acc, get_score, merge_overlapping, psds


@pytest.fixture(scope="module")
def esc_predictions(data_dir):
    task = esc10_task(data_dir)
    test = task.splits["fold03"]
    index = {label: i for i, label in enumerate(task.label_vocabulary)}

    def onehot(split):
        y = np.zeros((len(split.labels), len(index)))
        y[np.arange(len(split.labels)), [index[row[0]] for row in split.labels]] = 1
        return y

    train = [task.splits[f"fold0{k}"] for k in range(3)]
    x = np.vstack([np.hstack([s.embeddings, np.ones((len(s.labels), 1))]) for s in train])
    weights = np.linalg.lstsq(x, np.vstack([onehot(s) for s in train]), rcond=None)[0]
    logits = np.hstack([test.embeddings, np.ones((len(test.labels), 1))]) @ weights
    probabilities = np.exp(logits * 5) / np.exp(logits * 5).sum(axis=1, keepdims=True)
    return probabilities, onehot(test)


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney: the chance a positive row outscores a negative one, ties counting one half (a plain loop)."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum(float((p > neg).sum()) + 0.5 * float((p == neg).sum()) for p in pos)
    return wins / (len(pos) * len(neg))


def _average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """sum_k (R_k - R_(k-1)) P_k over the distinct thresholds, highest first (step-wise area, no interpolation)."""
    total, recall_before = 0.0, 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= threshold
        hits = float((chosen & positive).sum())
        recall = hits / positive.sum()
        total += (recall - recall_before) * hits / chosen.sum()
        recall_before = recall
    return total


def test_scene_scores_match_kit_definitions(esc_predictions):
    predictions, targets = esc_predictions
    loop_top1 = sum(np.argmax(p) == np.argmax(t) for p, t in zip(predictions, targets, strict=True)) / len(targets)
    assert get_score("top1_acc").scene(predictions, targets) == loop_top1
    assert get_score("pitch_acc").scene(predictions, targets) == loop_top1
    assert 0.3 < loop_top1 < 1.0  # real, imperfect predictions
    classes = range(targets.shape[1])
    per_class_ap = [_average_precision(predictions[:, c], targets[:, c] == 1) for c in classes]
    per_class_auc = np.array([_auc(predictions[:, c], targets[:, c] == 1) for c in classes])
    assert 0.3 < np.mean(per_class_ap) < 1.0 and 0.5 < per_class_auc.mean() < 1.0
    assert get_score("mAP").scene(predictions, targets) == pytest.approx(np.mean(per_class_ap), abs=0, rel=1e-12)
    assert get_score("aucroc").scene(predictions, targets) == pytest.approx(per_class_auc.mean(), abs=0, rel=1e-12)
    assert get_score("d_prime").scene(predictions, targets) == pytest.approx(
        np.mean(stats.norm().ppf(per_class_auc) * np.sqrt(2.0)), abs=0, rel=1e-12)
    tiny = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.8, 0.2]]), np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    # by hand: class 0 (positives 0.9, 0.4; negatives 0.8, 0.35) and class 1 (positives 0.65, 0.2; negatives 0.6,
    # 0.1) both rank pos, neg, pos, neg: AUC 3/4 (3 of 4 pairs won), AP (1/2)(1/1) + (1/2)(2/3) = 5/6
    assert get_score("aucroc").scene(*tiny) == pytest.approx(0.75, abs=1e-15)
    assert get_score("mAP").scene(*tiny) == pytest.approx(5 / 6, abs=1e-15)


def test_nan_rules_when_a_class_has_no_positive_row(esc_predictions):
    predictions, targets = esc_predictions
    missing = targets[:, 0] == 0  # drop every row of class 0: roc_auc_score raises, the kit returns NaN
    assert math.isnan(get_score("aucroc").scene(predictions[missing], targets[missing]))
    assert math.isnan(get_score("d_prime").scene(predictions[missing], targets[missing]))
    # the kit's scikit-learn (< 1.1) gave that class an AP of 0/0, so the macro mean was NaN (newer versions: 0)
    assert math.isnan(get_score("mAP").scene(predictions[missing], targets[missing]))
    assert not math.isnan(get_score("top1_acc").scene(predictions[missing], targets[missing]))


def test_chroma_accuracy_ignores_octaves():
    targets = np.eye(24)[[0, 13, 5]]
    predictions = np.eye(24)[[12, 1, 6]]
    assert chroma_acc(predictions, targets) == pytest.approx(2 / 3)
    assert get_score("top1_acc").scene(predictions, targets) == 0.0


def test_unknown_score_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown score 'f1'"):
        get_score("f1")


@pytest.fixture(scope="module")
def dcase_predictions(tools_dir, tmp_path_factory):
    task = dcase_task(dcase_scenes(tools_dir, tmp_path_factory.mktemp("dcase")))
    probabilities = least_squares_probabilities(task, "train", "test")
    split = task.splits["test"]
    layout = FrameLayout.from_rows(split.filenames, split.timestamps)
    return task, layout, probabilities


@pytest.mark.parametrize("name", ["event_onset_200ms_fms", "event_onset_50ms_fms", "segment_1s_er"])
def test_fast_event_scores_equal_sed_eval_on_real_predictions(dcase_predictions, name):
    task, layout, probabilities = dcase_predictions
    labels = task.label_vocabulary
    reference = task.events["test"]
    spec = SCORES[name]
    checked = 0
    for threshold in (0.15, 0.3, 0.5):
        for setting in postprocessing_settings(task.metadata):
            predicted = layout.events(probabilities, labels, setting, threshold=threshold)
            assert spec.event(predicted, reference, labels, "fast") == spec.event(predicted, reference, labels,
                                                                                  "sed_eval")
            checked += sum(len(v) for v in predicted.values())
    assert checked > 100  # the comparison saw many real predicted events


def test_the_sed_eval_backend_is_sed_eval_called_as_the_kit_calls_it(dcase_predictions):
    """The reference backend against sed_eval called directly on plain per-file event lists (tests/event_oracle.py)."""
    task, layout, probabilities = dcase_predictions
    labels = [str(label) for label in task.label_vocabulary]
    predicted = layout.events(probabilities, labels, postprocessing_settings(task.metadata)[0], threshold=0.15)
    assert sum(len(v) for v in predicted.values()) > 50
    expected = sed_eval_kit_scores(predicted, task.events["test"], labels)
    onset = SCORES["event_onset_200ms_fms"].event(predicted, task.events["test"], labels, "sed_eval")
    assert onset == {"f_measure": expected["event_onset_200ms_fms"],
                     "precision": expected["event_onset_200ms_fms_precision"],
                     "recall": expected["event_onset_200ms_fms_recall"]}
    segment = SCORES["segment_1s_er"].event(predicted, task.events["test"], labels, "sed_eval")
    assert segment == {"error_rate": expected["segment_1s_er"]}


def test_event_scores_edge_cases_equal_sed_eval():
    labels = ["a", "b"]
    reference = {"f1.wav": [{"label": "a", "start": 1000.0, "end": 2000.0}], "f2.wav": []}
    cases = [
        {"f1.wav": [], "f2.wav": []},  # nothing detected: precision and F are NaN
        {"f1.wav": [{"label": "b", "start": 1000.0, "end": 1500.0}], "f2.wav": []},  # wrong label
        {"f1.wav": [{"label": "a", "start": 1200.0, "end": 1300.0}],  # exactly on the 200 ms collar
         "f2.wav": [{"label": "a", "start": 0.0, "end": 120.0}]},
    ]
    for predicted in cases:
        for name in ("event_onset_200ms_fms", "segment_1s_er"):
            fast = SCORES[name].event(predicted, reference, labels, "fast")
            slow = SCORES[name].event(predicted, reference, labels, "sed_eval")
            assert fast.keys() == slow.keys()
            for key in fast:
                assert fast[key] == slow[key] or (math.isnan(fast[key]) and math.isnan(slow[key]))
    nothing = SCORES["event_onset_200ms_fms"].event(cases[0], reference, labels)
    assert math.isnan(nothing["f_measure"]) and nothing["recall"] == 0.0


def test_psds_of_oracle_and_half_oracle_predictions(dcase_predictions):
    task, layout, _ = dcase_predictions
    labels, reference, split = task.label_vocabulary, task.events["test"], task.splits["test"]
    oracle = np.zeros((len(split.labels), len(labels)))
    for row, active in enumerate(split.labels):
        oracle[row, [labels.index(label) for label in active]] = 1.0
    half = oracle.copy()
    half[np.isin(split.filenames, layout.files[: len(layout.files) // 2])] = 0.0  # miss every event of half the files
    setting = postprocessing_settings(task.metadata)[0]
    durations = dict.fromkeys(layout.files, 30.0)
    thresholds = np.linspace(0.05, 0.95, 10)

    def value(probabilities):
        return psds([layout.events(probabilities, labels, setting, threshold=t) for t in thresholds], reference,
                    durations, labels)

    assert value(oracle) == pytest.approx(1.0)
    assert 0.3 < value(half) < 0.7


def test_psds_scores_only_labels_with_reference_events():
    """psds_eval fails (KeyError) on a label without reference events; such labels are left out of the score."""
    a, b = {"label": "a", "start": 1000.0, "end": 3000.0}, {"label": "b", "start": 5000.0, "end": 8000.0}
    reference = {"f.wav": [a], "g.wav": [b], "h.wav": []}
    durations = {"f.wav": 120.0, "g.wav": 120.0, "h.wav": 120.0}
    hit_a = {"f.wav": [{**a, "end": 2960.0}], "g.wav": [], "h.wav": []}
    both = {**hit_a, "g.wav": [b]}
    with_c = {**both, "h.wav": [{"label": "c", "start": 0.0, "end": 500.0}]}  # c has no reference event
    labels = ["a", "b", "c"]
    assert psds([both, with_c], reference, durations, labels) == psds([both], reference, durations, ["a", "b"])
    assert psds([both], reference, durations, labels) == pytest.approx(1.0)
    assert math.isnan(psds([hit_a], {"f.wav": [a]}, durations, labels))  # one label: its std is undefined
    assert math.isnan(psds([hit_a], {"f.wav": []}, durations, labels))


def test_psds_merges_overlapping_reference_events_of_one_label():
    """psds_eval refuses overlapping reference events of one label; they count as their union."""
    overlapping = {"f.wav": [{"label": "a", "start": 1000.0, "end": 2000.0}, {"label": "b", "start": 1500.0,
                                                                               "end": 2500.0},
                             {"label": "a", "start": 1500.0, "end": 3000.0}, {"label": "a", "start": 3000.0,
                                                                               "end": 3500.0}]}
    assert merge_overlapping(overlapping) == {"f.wav": [
        {"label": "a", "start": 1000.0, "end": 3000.0}, {"label": "a", "start": 3000.0, "end": 3500.0},
        {"label": "b", "start": 1500.0, "end": 2500.0}]}
    union = merge_overlapping(overlapping)
    durations = {"f.wav": 60.0}
    points = [{"f.wav": [{"label": "a", "start": 1000.0, "end": 3000.0}, {"label": "b", "start": 1500.0,
                                                                          "end": 2500.0}]}]
    value = psds(points, overlapping, durations, ["a", "b"])
    assert value == psds(points, union, durations, ["a", "b"]) and 0.0 < value < 1.0
