"""Per-clip test predictions (written, read back, the kit's predictions and every test score recomputed from them)
and per-class scores, on real ESC-10 features and rebuilt DCASE 2016 scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from probe_helpers import dcase_scenes, dcase_task, esc10_task

from evaluation.predictions import PREDICTIONS_ARRAYS, PREDICTIONS_FILENAME, read_predictions, write_predictions
from evaluation.protocol import ProbeConfig, evaluate
from evaluation.scores import get_score


@pytest.fixture(scope="module")
def esc_result(data_dir):
    return evaluate(esc10_task(data_dir), ProbeConfig(grid_points=2, max_epochs=3, seeds=[0, 1]))


@pytest.fixture(scope="module")
def dcase_result(tools_dir, tmp_path_factory):
    task = dcase_task(dcase_scenes(tools_dir, tmp_path_factory.mktemp("dcase")))
    return task, evaluate(task, ProbeConfig(protocol="knn", psds=False))


def test_scene_predictions_round_trip_and_give_every_test_score(esc_result, data_dir, tmp_path):
    task = esc10_task(data_dir)
    write_predictions(tmp_path, esc_result.predictions)
    meta = json.loads((tmp_path / PREDICTIONS_FILENAME).read_text())
    assert meta["schema"] == "hear-atst-predictions/1" and meta["rows"] == 2 * 200  # 2 seeds x every clip once
    with np.load(tmp_path / PREDICTIONS_ARRAYS, allow_pickle=False) as npz:
        assert npz["probabilities"].shape == (400, 10) and npz["filename"].dtype.kind == "U"
    back = read_predictions(tmp_path)
    assert back.labels == [str(label) for label in task.label_vocabulary]
    assert [(f["seed"], f["fold"]) for f in back.folds] == [(s, f"fold0{k}") for s in (0, 1) for k in range(5)]
    for seed_index, run in enumerate(esc_result.runs):
        for fold, recorded in run["folds"].items():
            kit = back.kit_predictions(run["seed"], fold)
            assert list(back.filename[back.select(run["seed"], fold)]) == task.splits[fold].filenames
            for name, value in recorded["scores"].items():  # the same numbers, from the file alone
                assert get_score(name).scene(kit["prediction"], kit["target"]) == value
            np.testing.assert_allclose(np.exp(kit["prediction_logit"]) / np.exp(kit["prediction_logit"]).sum(1,
                                       keepdims=True), kit["prediction"], rtol=1e-5)
            assert esc_result.predicted_scores[seed_index][fold]["test_score"] == recorded["scores"]["top1_acc"]
    with pytest.raises(KeyError, match="no predictions for seed 7"):
        back.select(7, "fold00")


def test_per_class_scores_and_confusion_of_a_multiclass_task(esc_result):
    block = esc_result.to_json()["class_scores"]
    classes = block["classes"]
    assert [c["label"] for c in classes] == esc_result.predictions.labels
    assert sum(c["support"] for c in classes) == 200 and all(c["support"] == 20 for c in classes)
    # recall weighted by support is the pooled accuracy: with equal folds, the mean fold accuracy over seeds
    pooled = sum(c["recall"] * c["support"] for c in classes) / 200
    assert pooled == pytest.approx(esc_result.score["mean"], abs=1e-12)
    counts = np.array(block["confusion"]["counts"])
    assert counts.sum() == 200 and (counts.sum(axis=1) == 20).all()
    first = esc_result.runs[0]["folds"]
    assert np.trace(counts) / 200 == pytest.approx(np.mean([f["scores"]["top1_acc"] for f in first.values()]))
    assert all(0 <= c["average_precision"] <= 1 and 0 <= c["f_measure"] <= 1 for c in classes)


def test_event_predictions_give_the_events_and_scores_of_the_run(dcase_result, tmp_path):
    task, result = dcase_result
    write_predictions(tmp_path, result.predictions)
    back = read_predictions(tmp_path / PREDICTIONS_FILENAME)
    kit = back.kit_predictions(0, "test")
    assert len(kit["timestamp"]) == len(task.splits["test"].filenames) and not np.isnan(kit["timestamp"]).any()
    files = result.events.files
    assert {name: [dict(e) for e in events] for name, events in kit["predicted_events"].items()} == {
        name: entry["predicted"] for name, entry in files.items()}
    fold = result.runs[0]["folds"]["test"]
    assert back.folds[0]["postprocessing"] == fold["postprocessing"]
    reference = task.events["test"]
    for name, value in fold["scores"].items():
        scores = get_score(name).event(kit["predicted_events"], reference, back.labels)
        assert next(iter(scores.values())) == value
    block = result.to_json()["class_scores"]
    assert "confusion" not in block and "200 ms" in block["basis"]
    assert sum(c["support"] for c in block["classes"]) == sum(len(v) for v in reference.values())


def test_a_damaged_predictions_file_is_a_clear_error(esc_result, tmp_path):
    write_predictions(tmp_path, esc_result.predictions)
    meta = json.loads((tmp_path / PREDICTIONS_FILENAME).read_text())
    (tmp_path / PREDICTIONS_FILENAME).write_text(json.dumps({**meta, "rows": 3}))
    with pytest.raises(ValueError, match="do not match 3 rows"):
        read_predictions(tmp_path)
    (tmp_path / PREDICTIONS_ARRAYS).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"test\.predictions\.npz: not a readable"):
        read_predictions(tmp_path)
