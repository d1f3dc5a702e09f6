"""Fold rotation, selection on fold 0, the kit's predicted-scores keys, input checks, and the event path end
to end on rebuilt DCASE 2016 scenes."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from event_oracle import kit_events, sed_eval_kit_scores
from probe_helpers import dcase_scenes, dcase_task, esc10_task

from evaluation.data import SplitEmbeddings, TaskEmbeddings
from evaluation.probes.grid import sample_grid
from evaluation.protocol import ProbeConfig, evaluate, fold_rotation, summarize


def test_fold_rotation_is_the_kits():
    rotation = fold_rotation({"split_mode": "presplit_kfold", "splits": ["fold02", "fold00", "fold01", "fold03"]})
    assert rotation == [
        {"train": ["fold02", "fold03"], "valid": ["fold01"], "test": ["fold00"]},
        {"train": ["fold00", "fold03"], "valid": ["fold02"], "test": ["fold01"]},
        {"train": ["fold00", "fold01"], "valid": ["fold03"], "test": ["fold02"]},
        {"train": ["fold01", "fold02"], "valid": ["fold00"], "test": ["fold03"]},
    ]
    assert fold_rotation({"split_mode": "trainvaltest", "splits": ["train", "valid", "test"]}) == [
        {"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    with pytest.raises(ValueError, match="unknown split_mode"):
        fold_rotation({"split_mode": "random"})


def test_summary_is_mean_sample_std_and_t_interval():
    summary = summarize([0.5, 0.7, 0.6])
    assert summary["mean"] == pytest.approx(0.6) and summary["std"] == pytest.approx(0.1)
    assert summary["ci95"] == pytest.approx([0.6 - 4.302653 * 0.1 / math.sqrt(3), 0.6 + 4.302653 * 0.1 / math.sqrt(3)])
    assert math.isnan(summarize([0.5])["std"]) and summarize([0.5])["n"] == 1


def test_summary_skips_nan_but_keeps_an_infinite_fold():
    """A perfect fold's d_prime is inf: dropping it would pull the mean down; NaN folds are skipped."""
    assert summarize([1.0, math.nan, 3.0])["mean"] == 2.0 and summarize([1.0, math.nan, 3.0])["n"] == 2
    summary = summarize([1.0, math.inf, 3.0])
    assert summary["mean"] == math.inf and summary["n"] == 3
    assert math.isnan(summary["std"]) and all(math.isnan(v) for v in summary["ci95"])


@pytest.fixture(scope="module")
def esc_task(data_dir):
    return esc10_task(data_dir)


@contextlib.contextmanager
def recorded_fits() -> Iterator[list[tuple[Any, Any, list]]]:
    """Record every fit of the runs inside, fold by fold in order: (probe, fold, the fold's fitted heads)."""
    from evaluation.probes.heads import TrainedHeadsProbe

    fits = []
    fit = TrainedHeadsProbe.fit

    def spy(self, folds, points, seed):
        trained = fit(self, folds, points, seed)
        fits.extend((self, fold, trained[i * len(points):(i + 1) * len(points)]) for i, fold in enumerate(folds))
        return trained

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainedHeadsProbe, "fit", spy)
        yield fits


def grid_searches(fits: list[tuple[Any, Any, list]]) -> list[tuple[Any, Any, list]]:
    """The fits on fold 0 (the grid search), one a seed."""
    return [fit for fit in fits if fit[1].name == "fold00"]


def validation_top1_by_hand(task, fit) -> list[float]:
    """Independent oracle of validation scores: each fitted head's best checkpoint predicts its fold's validation
    split (the next fold, the kit's rotation: fold00 -> fold01 ... fold04 -> fold00), counted right when its most
    probable label is the clip's label."""
    probe, fold, fitted = fit
    valid = task.splits[f"fold0{(int(fold.name[-1]) + 1) % 5}"]
    np.testing.assert_array_equal(probe.context.x[fold.valid_rows].numpy(), valid.embeddings)  # that split's rows
    scores = []
    for head in fitted:
        probabilities, _ = probe.predict(head, fold, fold.valid_rows)
        right = sum(task.label_vocabulary[int(np.argmax(row))] == labels[0]
                    for row, labels in zip(probabilities, valid.labels, strict=True))
        scores.append(right / len(valid.labels))
    return scores


@pytest.fixture(scope="module")
def esc_run(esc_task):
    with recorded_fits() as fits:
        result = evaluate(esc_task, ProbeConfig(grid_points=3, max_epochs=9, seeds=[3, 4]))
    return result, grid_searches(fits)


@pytest.fixture(scope="module")
def esc_result(esc_run):
    return esc_run[0]


def test_grid_is_searched_on_fold_zero_and_the_best_is_retrained(esc_run, esc_task):
    """Every recorded validation score is recomputed by hand from the chosen checkpoints' predictions; the best of
    those (the first of ties, like the kit's stable sort) is the selected point and fold 0's validation score."""
    result, searches = esc_run
    assert len(searches) == len(result.runs) == 2
    for run, search in zip(result.runs, searches, strict=True):
        grid = run["grid"]
        assert len(grid) == 3
        by_hand = validation_top1_by_hand(esc_task, search)
        assert [g["validation_score"] for g in grid] == by_hand
        best = by_hand.index(max(by_hand))
        assert run["selected_hyperparameters"] == grid[best]["hyperparameters"]
        assert run["folds"]["fold00"]["validation_score"] == by_hand[best]
        assert list(run["folds"]) == ["fold00", "fold01", "fold02", "fold03", "fold04"]
        assert all(fold["epoch"] in (2, 5, 8) for fold in run["folds"].values())  # checks every 3 epochs
    assert len({score for run in result.runs for score in (g["validation_score"] for g in run["grid"])}) > 1


def test_the_other_folds_retrain_the_head_chosen_on_fold_zero(data_dir, monkeypatch):
    """Make the last grid point win on fold 0: folds 1-4 must then train exactly that head, with its schedule."""
    from evaluation.probes.heads import TrainedHeadsProbe

    calls = []
    fit = TrainedHeadsProbe.fit

    def spy(self, folds, points, seed):
        trained = fit(self, folds, points, seed)
        calls.append(([fold.name for fold in folds], list(points), [self._heads[p] for p in points],
                      [self._schedules[p] for p in points]))
        if len(calls) == 1:  # the grid on fold 0: the last point scores best
            for rank, result in enumerate(trained):
                result.best_value = float(rank)
        return trained

    monkeypatch.setattr(TrainedHeadsProbe, "fit", spy)
    result = evaluate(esc10_task(data_dir), ProbeConfig(grid_points=3, max_epochs=3, seeds=[0]))
    (grid_folds, grid_points, grid_heads, grid_schedules), (other_folds, other_points, other_heads, other_schedules) = (
        calls)
    assert grid_folds == ["fold00"] and other_folds == ["fold01", "fold02", "fold03", "fold04"]
    assert grid_points == [0, 1, 2] and other_points == [2]
    assert other_heads == [grid_heads[2]] and other_schedules == [grid_schedules[2]]
    run = result.runs[0]
    assert run["selected_hyperparameters"] == run["grid"][2]["hyperparameters"]


def test_bf16_probe_training_scores_like_fp32(esc_result, data_dir):
    """The same protocol with bfloat16 GEMMs: recorded, and a score close to fp32's on real ESC-10 embeddings."""
    bf16 = evaluate(esc10_task(data_dir), ProbeConfig(grid_points=3, max_epochs=9, seeds=[3, 4], precision="bf16"))
    assert bf16.protocol["precision"] == "bf16" and esc_result.protocol["precision"] == "fp32"
    assert bf16.score["n"] == 10 and bf16.score["mean"] > 0.3  # 10 classes: chance is 0.1
    assert abs(bf16.score["mean"] - esc_result.score["mean"]) < 0.05
    with pytest.raises(ValueError, match="precision"):
        ProbeConfig(precision="fp16")


@pytest.mark.parametrize("kit_option", [{"shuffle": False}, {"stop_on_non_finite": True}])
def test_the_kits_compatibility_options_do_not_apply_to_the_linear_protocol(kit_option):
    with pytest.raises(ValueError, match="linear protocol follows EVAR"):
        ProbeConfig(protocol="linear", **kit_option)
    with pytest.raises(ValueError, match="linear_lr must be > 0"):
        ProbeConfig(protocol="linear", linear_lr=0.0)
    assert ProbeConfig(protocol="hear", **kit_option).run_name != "hear"


def test_results_json_and_predicted_scores_keys(esc_result):
    data = esc_result.to_json()
    assert set(data) == {"protocol", "primary_score", "higher_is_better", "score", "scores", "runs", "class_scores"}
    assert data["primary_score"] == "top1_acc" and data["higher_is_better"] is True
    assert data["score"]["n"] == 10 and set(data["scores"]) == {"top1_acc", "mAP", "d_prime", "aucroc"}
    values = [f["scores"]["top1_acc"] for run in data["runs"] for f in run["folds"].values()]
    assert data["score"]["mean"] == pytest.approx(np.mean(values))
    kit = esc_result.to_predicted_scores(1)
    assert set(kit) == {"fold00", "fold01", "fold02", "fold03", "fold04", "aggregated_scores", "hparams",
                        "postprocessing", "score_mode"}
    assert set(kit["fold03"]) == {"test_loss", "test_score", "test_top1_acc", "test_mAP", "test_d_prime",
                                  "test_aucroc", "validation_score", "epoch", "time_in_min"}
    assert kit["fold03"]["test_score"] == kit["fold03"]["test_top1_acc"]
    folds = [kit[f"fold0{k}"]["test_score"] for k in range(5)]
    assert kit["aggregated_scores"]["test_score_mean"] == pytest.approx(np.mean(folds))
    assert kit["aggregated_scores"]["test_score_std"] == pytest.approx(np.std(folds, ddof=1))
    assert kit["score_mode"] == "max" and kit["postprocessing"] == []
    assert kit["hparams"]["initialization"] in ("xavier_uniform_", "xavier_normal_")


@pytest.mark.parametrize(("grid", "cap"), [("default", 9), ("fast", 20), ("faster", None)])
def test_every_kit_grid_trains_and_selects_one_of_its_points(data_dir, grid, cap):
    """fast/faster vary the schedule between points: each schedule trains in its own bank, the best is chosen over
    all of them and retrained on the other folds with its own schedule."""
    task = esc10_task(data_dir)
    with recorded_fits() as fits:
        result = evaluate(task, ProbeConfig(grid=grid, grid_points=8, max_epochs=cap, seeds=[0]))
    run = result.runs[0]
    points = [point["hyperparameters"] for point in run["grid"]]
    assert points == sample_grid({"task_name": "esc10"}, 8, grid) and result.protocol["grid"] == grid
    scores = validation_top1_by_hand(task, grid_searches(fits)[0])
    assert [point["validation_score"] for point in run["grid"]] == scores
    best = scores.index(max(scores))  # the first of the ties, like the kit's stable sort
    assert run["selected_hyperparameters"] == points[best]
    assert run["folds"]["fold00"]["validation_score"] == scores[best]
    chosen = points[best]
    for fold in run["folds"].values():  # every fold ran the chosen point's own schedule
        assert (fold["epoch"] + 1) % chosen["check_val_every_n_epoch"] == 0
        assert fold["epochs_run"] <= min(chosen["max_epochs"], cap or chosen["max_epochs"])
    for point in run["grid"]:
        assert (point["epoch"] + 1) % point["hyperparameters"]["check_val_every_n_epoch"] == 0
        assert point["epoch"] < point["epochs_run"] <= min(point["hyperparameters"]["max_epochs"],
                                                           cap or point["hyperparameters"]["max_epochs"])
    assert run["grid"][best]["epochs_run"] == run["folds"]["fold00"]["epochs_run"]
    assert 0.2 < result.score["mean"] <= 1.0  # 10 classes: chance is 0.1


def _scene_task(**changes):
    rng = np.random.default_rng(0)
    splits = {f"fold0{k}": SplitEmbeddings(f"fold0{k}", rng.normal(size=(6, 4)).astype(np.float32),
                                           [["a"], ["b"]] * 3, [f"{k}{i}.wav" for i in range(6)]) for k in range(3)}
    for name, split in changes.items():
        splits[name] = split
    metadata = {"task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass",
                "split_mode": "new_split_kfold", "splits": ["fold00", "fold01", "fold02"], "evaluation": ["top1_acc"]}
    return TaskEmbeddings(metadata, ["a", "b"], splits)


@pytest.mark.parametrize(("change", "message"), [
    ({"fold01": SplitEmbeddings("fold01", np.full((2, 4), np.nan, np.float32), [["a"], ["b"]], ["x", "y"])},
     "split fold01 has NaN or infinite"),
    ({"fold02": SplitEmbeddings("fold02", np.zeros((1, 4), np.float32), [["zebra"]], ["x"])},
     "split fold02 row 0 has labels \\['zebra'\\] outside"),
    ({"fold00": SplitEmbeddings("fold00", np.zeros((0, 4), np.float32), [], [])}, "split fold00 is empty"),
    ({"fold01": SplitEmbeddings("fold01", np.zeros((1, 4), np.float32), [["a", "b"]], ["x"])},
     "multiclass rows need exactly one"),
])
def test_bad_inputs_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        evaluate(_scene_task(**change), ProbeConfig(grid="faster", max_epochs=1))


def test_missing_split_is_a_clear_error():
    task = _scene_task()
    del task.splits["fold02"]
    with pytest.raises(ValueError, match="split fold02 is listed in the metadata but has no embeddings"):
        evaluate(task, ProbeConfig(grid="faster", max_epochs=1))


@pytest.fixture(scope="module")
def dcase(tools_dir, tmp_path_factory):
    return dcase_task(dcase_scenes(tools_dir, tmp_path_factory.mktemp("dcase")))


def assert_test_events_and_scores_by_oracles(task, result) -> int:
    """The first seed's test events equal those re-derived from its test predictions by the kit's post-processing
    restated plainly, and its onset F-measure (with precision and recall) and 1 s segment error rate equal sed_eval's,
    called directly on those events against the task's annotations. Returns the number of predicted events."""
    fold = result.runs[0]["folds"]["test"]
    rows = result.predictions
    labels = [str(label) for label in task.label_vocabulary]
    assert rows.labels == labels and set(rows.fold) == {"test"} and set(rows.seed) == {result.runs[0]["seed"]}
    assert list(rows.filename) == task.splits["test"].filenames
    predicted = kit_events(rows.filename, rows.timestamp, rows.probabilities, labels, **fold["postprocessing"])
    assert {name: entry["predicted"] for name, entry in result.events.files.items()} == predicted
    expected = sed_eval_kit_scores(predicted, task.events["test"], labels)
    assert fold["scores"]["event_onset_200ms_fms"] == expected["event_onset_200ms_fms"]
    assert fold["scores"]["segment_1s_er"] == expected["segment_1s_er"]
    kit = result.to_predicted_scores()["test"]
    for key, value in expected.items():
        assert kit[f"test_{key}"] == value, key
    assert kit["test_score"] == expected["event_onset_200ms_fms"]
    return sum(map(len, predicted.values()))


def test_event_task_end_to_end(dcase):
    """The default event evaluation, PSDS included (1 hidden layer, 10 epochs); its test events and scores against
    independent oracles (``assert_test_events_and_scores_by_oracles``)."""
    result = evaluate(dcase, ProbeConfig(grid_points=1, max_epochs=10, seeds=[0]))
    fold = result.runs[0]["folds"]["test"]
    assert fold["epoch"] == 9  # dcase2016_task2 validates every 10 epochs
    assert fold["postprocessing"] in ({"median_filter_ms": 250, "min_duration": 125},
                                      {"median_filter_ms": 250, "min_duration": 250})
    assert set(fold["scores"]) == {"event_onset_200ms_fms", "segment_1s_er", "psds1"}
    assert 0.0 <= fold["scores"]["psds1"] <= 1.0
    assert assert_test_events_and_scores_by_oracles(dcase, result) >= 1  # 10 epochs of lr 1e-4: few detections
    assert fold["scores"]["event_onset_200ms_fms"] > 0.0 and fold["scores"]["segment_1s_er"] > 0.0
    kit = result.to_predicted_scores()
    assert {"test_event_onset_200ms_fms", "test_event_onset_200ms_fms_f_measure",
            "test_event_onset_200ms_fms_precision", "test_event_onset_200ms_fms_recall", "test_segment_1s_er",
            "test_segment_1s_er_error_rate", "test_psds1", "test_score", "test_loss"} <= set(kit["test"])
    assert "aggregated_scores" not in kit and kit["postprocessing"] == [list(p) for p in fold["postprocessing"].items()]
    assert result.higher_is_better is True and result.scores["segment_1s_er"]["n"] == 1


def test_event_scores_of_a_run_with_many_detections_by_oracles(dcase):
    """The same oracles on a run that detects many events (kNN, no training: seconds): the scores are not near 0."""
    result = evaluate(dcase, ProbeConfig(protocol="knn", seeds=[0], psds=False))
    assert assert_test_events_and_scores_by_oracles(dcase, result) > 20
    assert 0.1 < result.runs[0]["folds"]["test"]["scores"]["event_onset_200ms_fms"] < 1.0


@pytest.mark.slow
def test_event_task_with_psds_and_the_sed_eval_backend(dcase):
    fast = evaluate(dcase, ProbeConfig(grid_points=2, max_epochs=20, seeds=[0]))
    fold = fast.runs[0]["folds"]["test"]
    assert 0.0 <= fold["scores"]["psds1"] <= 1.0 and "test_psds1" in fast.to_predicted_scores()["test"]
    slow = evaluate(dcase, dataclasses.replace(ProbeConfig(grid_points=2, max_epochs=20, seeds=[0], psds=False),
                                               event_backend="sed_eval"))
    assert slow.runs[0]["folds"]["test"]["scores"]["event_onset_200ms_fms"] == \
        fold["scores"]["event_onset_200ms_fms"]
    assert slow.runs[0]["grid"] == fast.runs[0]["grid"]


def test_event_scores_inside_the_protocol_equal_sed_evals(dcase):
    """The CI suite's sed_eval equivalence through the whole probe stage: one grid point, 10 epochs, both backends
    give the same scores at every fold and the same grid."""
    config = ProbeConfig(grid_points=1, max_epochs=10, seeds=[0], psds=False)
    fast = evaluate(dcase, config)
    reference = evaluate(dcase, dataclasses.replace(config, event_backend="sed_eval"))
    assert reference.runs[0]["grid"] == fast.runs[0]["grid"]
    for name, fold in fast.runs[0]["folds"].items():
        assert reference.runs[0]["folds"][name]["scores"] == fold["scores"]
    assert 0.0 < fast.score["mean"] < 1.0


def early_stopping_by_hand(history: list[tuple[int, float]], patience: int, max_epochs: int) -> tuple[int, float, int]:
    """The kit's PyTorch Lightning rule restated on a head's validation history (one check an epoch): the checkpoint
    is the first check of the highest value (only a strictly higher one replaces it), and training ends after
    ``patience`` checks in a row without one, else at ``max_epochs``. Returns (best epoch, best value, epochs run)."""
    best_epoch, best_value, waited = -1, -math.inf, 0
    for epoch, value in history:
        if value > best_value:
            best_epoch, best_value, waited = epoch, value, 0
            continue
        waited += 1
        if waited >= patience:
            return best_epoch, best_value, epoch + 1
    return best_epoch, best_value, max_epochs


def test_an_uncapped_hear_protocol_run(esc_task):
    """No epoch cap: the kit's faster grid runs its own schedule (10 epochs, a check every epoch, its patience) to
    the end or to early stopping, on every fold, and learns (10 classes: chance is 0.1). Oracles: the stopping rule
    restated on each fold's validation history, and the chosen checkpoint's validation score counted by hand."""
    with recorded_fits() as fits:
        result = evaluate(esc_task, ProbeConfig(grid="faster", grid_points=2, seeds=[0]))
    run = result.runs[0]
    assert result.protocol["run"] == "hear-grid=faster-points=2"  # no max-epochs in the name: uncapped
    chosen = run["selected_hyperparameters"]
    assert chosen["max_epochs"] == 10 and chosen["check_val_every_n_epoch"] == 1
    best = [point["hyperparameters"] for point in run["grid"]].index(chosen)
    assert [fold.name for _, fold, _ in fits] == list(run["folds"]) == [f"fold0{k}" for k in range(5)]
    grid = fits[0][2]  # every grid point, trained on fold 0
    checked = [(point["hyperparameters"], point, head) for point, head in zip(run["grid"], grid, strict=True)]
    checked += [(chosen, recorded, fitted[best if fold.name == "fold00" else 0])
                for (_, fold, fitted), recorded in zip(fits, run["folds"].values(), strict=True)]
    for hyperparameters, recorded, head in checked:
        history = head.history
        assert [epoch for epoch, _ in history] == list(range(recorded["epochs_run"]))  # a check every epoch
        assert (recorded["epoch"], recorded["validation_score"], recorded["epochs_run"]) == early_stopping_by_hand(
            history, hyperparameters["patience"], hyperparameters["max_epochs"])
    for (probe, fold, fitted), recorded in zip(fits, run["folds"].values(), strict=True):
        head = fitted[best if fold.name == "fold00" else 0]
        assert validation_top1_by_hand(esc_task, (probe, fold, [head])) == [recorded["validation_score"]]
    assert any(recorded["epochs_run"] < 10 for _, recorded, _ in checked)  # the stopping rule was exercised
    assert result.score["n"] == 5 and result.score["mean"] > 0.3


def test_fold_aggregation_matches_pandas_with_nan_and_inf() -> None:
    """The kit aggregates folds with pandas: NaN skipped, an infinite d_prime fold gives inf mean and NaN std."""
    import pandas as pd

    from evaluation.protocol import _aggregate

    folds = [{"test_d_prime": 2.15, "test_top1_acc": 0.6, "test_mAP": math.nan},
             {"test_d_prime": math.inf, "test_top1_acc": 0.7, "test_mAP": 0.5},
             {"test_d_prime": 2.03, "test_top1_acc": 0.65, "test_mAP": 0.4}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = _aggregate(folds)
    frame = pd.DataFrame(folds)
    with np.errstate(invalid="ignore"):  # pandas warns on inf - inf too
        expectations = {key: {"mean": frame[key].mean(), "std": frame[key].std()} for key in folds[0]}
    for key in folds[0]:
        for stat, expected in expectations[key].items():
            value = ours[f"{key}_{stat}"]
            assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected), (key, stat)
    assert ours["test_d_prime_mean"] == math.inf and math.isnan(ours["test_d_prime_std"])


def test_probe_run_names_separate_protocols_and_settings() -> None:
    """Runs that would give different numbers get different results sub-folders; defaults stay short."""
    assert ProbeConfig().run_name == "hear"
    assert ProbeConfig(protocol="linear").run_name == "linear"
    assert ProbeConfig(seeds=[0, 1, 2]).run_name == "hear"  # the leaderboard ranks runs of other seeds together ...
    assert ProbeConfig(seeds=[0, 1, 2]).folder_name == "hear-seeds=0-2"  # ... but they never share a folder
    assert ProbeConfig(seeds=[3, 1]).folder_name == "hear-seeds=3_1" and ProbeConfig(seeds=[1]).folder_name == \
        "hear-seeds=1"
    assert ProbeConfig(psds=False, grid="fast").folder_name == "hear-grid=fast-no-psds"
    assert ProbeConfig().folder_name == "hear"
    assert ProbeConfig(grid="fast", precision="bf16").run_name == "hear-grid=fast-precision=bf16"
    assert ProbeConfig(shuffle=False, max_epochs=40, grid_points=1).run_name == "hear-points=1-kit-order-max-epochs=40"
    assert ProbeConfig(shuffle=False, stop_on_non_finite=True).run_name == "hear-kit-order-stop-non-finite"
    assert ProbeConfig(protocol="linear", linear_lr=1e-3).run_name == "linear-lr=0.001"


def test_epoch_cap_below_the_validation_interval_is_refused_up_front(data_dir) -> None:
    """The fast grid validates every 3 or 10 epochs: a cap of 5 would never validate its 10-epoch points."""
    with pytest.raises(ValueError, match=r"max_epochs=5 is below .* validation interval \(10 epochs\)"):
        evaluate(esc10_task(data_dir), ProbeConfig(grid="fast", max_epochs=5, seeds=[0]))


def test_psds_measures_each_file_by_its_audios_duration(dcase):
    """The duration recorded with the embeddings wins (the last frame's timestamp ends before the audio does);
    without one (the kit's folders) the task's sample_duration, else the last timestamp or event end."""
    from evaluation.protocol import _Evaluator

    name = next(iter(dcase.splits.values())).filenames[0]
    times, reference = np.array([20.0, 60.0, 100.0]), {name: [{"label": "a", "start": 0.0, "end": 130.0}]}
    recorded = _Evaluator(dataclasses.replace(dcase, durations={name: 0.125}), ProbeConfig())
    assert recorded._duration_s(name, times, reference) == 0.125
    fixed = _Evaluator(dataclasses.replace(dcase, metadata={**dcase.metadata, "sample_duration": 4.0}), ProbeConfig())
    assert fixed._duration_s(name, times, reference) == 4.0
    free = _Evaluator(dataclasses.replace(dcase, metadata={**dcase.metadata, "sample_duration": None}), ProbeConfig())
    assert free._duration_s(name, times, reference) == 0.13 and free._duration_s(name, times, {}) == 0.1
