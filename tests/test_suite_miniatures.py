"""The hear2021 suite file against the registered task configs, and the whole suite run end to end on miniature
task folders (every HEAR 2021 task shape) with the ``mel`` model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from suite_helpers import run_cli

from evaluation.suite.miniatures import write_suite_miniatures
from evaluation.suite.suites import load_suite, suite_names
from evaluation.taskfolder import TaskFolder
from tasks.registry import get_spec, run_config

PRIMARY = {  # hear_eval.md §2.4: the first metric of each leaderboard task
    "dcase2016_task2": "event_onset_200ms_fms", "maestro": "event_onset_50ms_fms", "nsynth_pitch": "pitch_acc",
    "speech_commands": "top1_acc", "beehive_states_fold0": "aucroc", "beijing_opera": "top1_acc",
    "tfds_crema_d": "top1_acc", "esc50": "top1_acc", "fsd50k": "mAP", "gunshot_triangulation": "top1_acc",
    "tfds_gtzan": "top1_acc", "tfds_gtzan_music_speech": "top1_acc", "libricount": "top1_acc",
    "mridangam_stroke": "top1_acc", "mridangam_tonic": "top1_acc", "vocal_imitation": "mAP",
    "vox_lingua_top10": "top1_acc",
}


def test_suite_files() -> None:
    assert suite_names() == ["atst-papers", "ci", "hear2021"]
    suite = load_suite("hear2021")
    assert len(suite.tasks) == 19
    for task in suite.tasks.values():
        metadata = task.metadata
        assert task.folder == f"{metadata['task_name']}-{metadata['version']}-{metadata['mode']}"
        assert metadata["evaluation"][0] == PRIMARY[metadata["task_name"]]
    folds = {task.key: task.metadata.get("nfolds") for task in suite.tasks.values()}
    assert (folds["gunshot_triangulation"], folds["gtzan_genre"], folds["vocal_imitation"], folds["maestro"]) == (
        7, 10, 3, 5)
    assert suite.tasks["fsd50k"].metadata["sample_duration"] is None
    assert suite.tasks["nsynth_pitch_5h"].metadata["pitch_range_min"] == 21
    # The tasks this project can prepare: the suite holds exactly what `hear-atst prepare` writes.
    for key, name, mode in (("esc50", "esc50", "full"), ("speech_commands_5h", "speech_commands", "5h"),
                            ("speech_commands_full", "speech_commands", "full"),
                            ("dcase2016_task2", "dcase2016_task2", "full")):
        prepared = run_config(get_spec(name).config, mode)
        assert {k: v for k, v in prepared.items() if k not in ("download_urls", "tmp_dir", "splits")} == (
            suite.tasks[key].metadata), key
    assert "voxceleb1-v1.1-hear-atst-full" in load_suite("atst-papers").folders()


@pytest.fixture(scope="module")
def miniatures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("miniatures")
    folders = write_suite_miniatures(load_suite("hear2021"), out)
    assert len(folders) == 19
    return out


def test_miniature_folders(miniatures: Path) -> None:
    suite = load_suite("hear2021")
    for task in suite.tasks.values():
        folder = TaskFolder.load(miniatures / task.folder)
        written = json.loads((folder.path / "task_metadata.json").read_text())
        assert {k: v for k, v in written.items() if k not in ("tmp_dir", "splits")} == task.metadata
        assert len(folder.label_vocabulary) == task.labels
        assert folder.splits == written["splits"]
    nsynth = TaskFolder.load(miniatures / "nsynth_pitch-v2.2.3-5h")
    # pitches in numeric order, so that chroma is the class index modulo 12
    assert nsynth.label_vocabulary[0] == "21" and nsynth.label_vocabulary[-1] == "108"


def test_hear2021_suite_end_to_end_on_miniatures(miniatures: Path, tmp_path: Path) -> None:
    result = run_cli("run", "--models", "mel", "--suite", "hear2021", "--tasks-dir", str(miniatures),
                     "--embeddings-dir", str(tmp_path / "e"), "--results-dir", str(tmp_path / "r"), "--run-dir",
                     str(tmp_path / "run"), "--protocol", "linear", "--max-epochs", "2", "--no-psds", "--workers", "2")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    # 19 embed and 19 probe jobs; the miniatures have 16 kHz audio already, so nothing is resampled
    assert {key: summary["counts"][key] for key in ("succeeded", "skipped", "failed")} == {
        "succeeded": 38, "skipped": 19, "failed": 0}
    for task in load_suite("hear2021").tasks.values():
        run = tmp_path / "r" / "mel" / task.folder / "linear-max-epochs=2-no-psds"
        results = json.loads((run / "results.json").read_text())
        assert list(results["scores"]) == task.metadata["evaluation"]
        assert len(results["runs"][0]["folds"]) == task.metadata.get("nfolds", 1)
        for name, score in results["scores"].items():
            if score["mean"] is None:
                # The kit's d_prime is norm.ppf(class AUC): ±inf when a class's single test clip ranks first or
                # last. Every other score is finite on the miniatures (every class has positives in every split).
                assert name == "d_prime" and math.isfinite(results["scores"]["aucroc"]["mean"]), (task.key, name)
            else:
                assert math.isfinite(score["mean"]), (task.key, name)
    nsynth_run = tmp_path / "r" / "mel" / "nsynth_pitch-v2.2.3-5h" / "linear-max-epochs=2-no-psds"
    nsynth = json.loads((nsynth_run / "results.json").read_text())["scores"]
    assert nsynth["chroma_acc"]["mean"] >= nsynth["pitch_acc"]["mean"]
