"""``hear-atst eval``/``embed`` end to end on real prepared tasks, results files, reruns and error messages."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from event_oracle import kit_events, sed_eval_kit_scores
from typer.testing import CliRunner

from evaluation.environment import cpu_model
from evaluation.leaderboard.aggregate import collect_runs
from evaluation.protocol import ProbeConfig
from evaluation.results import read_events, read_results
from evaluation.runner import resolve_model, run_eval
from evaluation.taskfolder import TaskFolder
from hear_atst.atomic import atomic_write
from hear_atst.cli import app
from hear_atst.registry import parse_model_options

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^(\S+) (\S+) = (\d\.\d{4}|nan) ± (\d\.\d{4}|nan) \((\d+) folds × (\d+) seeds\)$")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def eval_args(task: str, tasks_dir: Path, root: Path, *extra: str) -> list[str]:
    return ["eval", "--model", "mel", "--task", task, "--tasks-dir", str(tasks_dir),
            "--embeddings-dir", str(root / "embeddings"), "--results-dir", str(root / "results"), *extra]


def without_run_details(results: dict) -> dict:
    """A results document minus what legitimately changes between two runs (date, wall times)."""
    stripped = {k: v for k, v in results.items() if k not in ("date", "timing_s")}
    return json.loads(json.dumps(stripped))


def test_eval_cli_on_esc10_writes_results_and_states_the_score(esc10_task: Path, tmp_path: Path):
    code, stdout, stderr = invoke(*eval_args("esc50", esc10_task.parent, tmp_path, "--grid", "faster",
                                             "--probe-precision", "bf16", "--no-shuffle", "--stop-on-non-finite"))
    assert code == 0, stderr
    match = SUMMARY.match(stdout.strip().splitlines()[-1])
    assert match, stdout
    task, primary, mean, std, folds, seeds = match.groups()
    assert (task, primary, folds, seeds) == ("esc50", "top1_acc", "5", "1")  # --task esc50 found esc50-...-small
    assert 0.3 < float(mean) < 0.95  # 10 classes: chance is 0.1
    assert 0.0 < float(std) < 0.2

    out = tmp_path / "results" / "mel" / esc10_task.name / "hear-grid=faster-kit-order-stop-non-finite-precision=bf16"
    results = read_results(out / "results.json")
    assert results["model"] == {"id": "mel", "name": "mel", "module": "hear_atst.mel", "options": {},
                                "weights": None, "weights_sha256": None}
    assert results["task"]["folder"] == esc10_task.name and results["task"]["split_mode"] == "presplit_kfold"
    listed = sum(len(json.loads(path.read_text())) for path in esc10_task.glob("fold0*.json"))
    assert results["task"]["clips"] == listed > 0  # the leaderboard keys a non-standard clip count apart
    assert results["protocol"]["name"] == "hear" and results["protocol"]["seeds"] == [0]
    assert results["protocol"]["precision"] == "bf16"
    assert (results["protocol"]["shuffle"], results["protocol"]["stop_on_non_finite"]) == (False, True)
    assert results["primary_score"] == "top1_acc" and results["higher_is_better"] is True
    score = results["score"]
    assert score["n"] == 5 and f"{score['mean']:.4f}" == mean and f"{score['std']:.4f}" == std
    assert score["ci95"][0] < score["mean"] < score["ci95"][1]
    assert sorted(results["runs"][0]["folds"]) == [f"fold{i:02d}" for i in range(5)]
    assert results["runs"][0]["selected_hyperparameters"]["max_epochs"] == 10  # the faster grid's
    assert set(results["timing_s"]) == {"embed", "probe", "total"}
    environment = results["environment"]
    assert environment["numpy"] == importlib.metadata.version("numpy")
    assert environment["sed_eval"] == importlib.metadata.version("sed_eval")
    assert {"hear_atst", "python", "torch", "scikit-learn", "device", "precision"} <= set(environment)
    assert environment["cpu"] == cpu_model() and environment["cpu"]

    kit = json.loads((out / "test.predicted-scores.json").read_text())
    for fold in (f"fold{i:02d}" for i in range(5)):
        expected = {"test_loss", "test_score", "test_top1_acc", "validation_score", "epoch", "time_in_min"}
        assert expected <= set(kit[fold])
        assert kit[fold]["test_score"] == results["runs"][0]["folds"][fold]["scores"]["top1_acc"]
    assert kit["aggregated_scores"]["test_score_mean"] == pytest.approx(score["mean"], abs=1e-12)
    assert (Path(kit["embedding_path"]) / ".done.embeddings").is_file()
    assert "embedding esc50-v2.0.0-small with mel" in stderr


def test_eval_rerun_reuses_embeddings_and_gives_identical_results(spoken_digit_task: Path, tmp_path: Path):
    args = eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--protocol", "linear", "--seeds", "2")
    runs = [invoke(*args) for _ in range(2)]
    assert [code for code, _, _ in runs] == [0, 0], runs[0][2]
    lines = [stdout.strip().splitlines()[-1] for _, stdout, _ in runs]
    assert lines[0] == lines[1] and lines[0].endswith("(5 folds × 2 seeds)")
    assert "embedding spoken_digit" in runs[0][2] and "embedding " not in runs[1][2]  # the rerun used the cache
    assert "using the cached embeddings of spoken_digit" in runs[1][2]
    for seed in (0, 1):  # probe progress, a line after the grid and after the other folds
        assert f"seed {seed}: 1 grid point(s) trained on fold00 in " in runs[1][2]
        assert f"seed {seed}: point 0 trained on the 4 other fold(s) in " in runs[1][2]
    run_dir = tmp_path / "results" / "mel" / spoken_digit_task.name / "linear-seeds=0-1"  # seeds: the run's identity
    results = read_results(run_dir / "results.json")
    assert [run["seed"] for run in results["runs"]] == [0, 1] and results["score"]["n"] == 10
    assert 0.15 < results["score"]["mean"] < 0.9  # 10 spoken digits (chance 0.1), 80 training clips: 0.285 here
    assert results["run_id"] == "linear-seeds=0-1" and results["protocol"]["run"] == "linear"
    provenance = results["provenance"]
    assert provenance["package_version"] == importlib.metadata.version("hear-atst")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert provenance["source_revision"]["git_sha"] == head.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout
    assert provenance["source_revision"]["dirty"] is bool(dirty.strip())
    embeddings = tmp_path / "embeddings" / "hear_atst.mel" / spoken_digit_task.name
    assert provenance["embeddings"]["path"] == str(embeddings)
    assert provenance["embeddings"]["identity"]["source"] == resolve_model("mel").source_identity
    wavs = sorted((spoken_digit_task / "16000").glob("*/*.wav"))
    manifest = "".join(f"{w.parent.name}/{w.name} {hashlib.sha256(w.read_bytes()).hexdigest()}\n" for w in wavs)
    assert provenance["embeddings"]["audio_manifest_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()


def test_event_task_end_to_end(dcase2016_small_task: Path, tmp_path: Path):
    """The event path: DCASE 2016 (72 scenes, 30 s) with the kit's post-processing, scored twice alike; the written
    events and scores against independent oracles (``check_scores_by_oracles``)."""
    setup, folder = resolve_model("mel"), TaskFolder.load(dcase2016_small_task)
    probe = ProbeConfig(protocol="linear", seeds=[0], max_epochs=10, psds=False)
    first = run_eval(setup, folder, embeddings_dir=tmp_path / "emb", results_dir=tmp_path / "res", probe=probe,
                     progress=False)
    results = first.results
    assert results["primary_score"] == "event_onset_200ms_fms" and results["score"]["n"] == 1
    assert 0.04 < results["score"]["mean"] < 0.9  # a constant prediction scores 0; 0.097 on the AMD EPYC
    assert set(results["scores"]) >= {"event_onset_200ms_fms", "segment_1s_er"}
    assert results["higher_is_better"] is True
    fold = results["runs"][0]["folds"]["test"]
    assert fold["postprocessing"]["median_filter_ms"] == 250
    assert fold["postprocessing"]["min_duration"] in (125, 250)
    kit = json.loads(first.predicted_scores_path.read_text())
    assert {"test_event_onset_200ms_fms", "test_event_onset_200ms_fms_precision", "test_segment_1s_er",
            "test_score"} <= set(kit["test"])
    assert "aggregated_scores" not in kit
    assert kit["score_mode"] == "max"
    assert first.summary_line().startswith("dcase2016_task2 event_onset_200ms_fms = ")
    assert first.summary_line().endswith("(1 folds × 1 seeds)")

    check_events_file(first.events_path, dcase2016_small_task, fold["postprocessing"])
    check_scores_by_oracles(first.events_path, first.predictions_path, dcase2016_small_task, fold, kit["test"])

    again = run_eval(setup, folder, embeddings_dir=tmp_path / "emb", results_dir=tmp_path / "res2", probe=probe,
                     progress=False)
    assert without_run_details(again.results) == without_run_details(results)
    assert again.events_path.read_bytes() == first.events_path.read_bytes()


def check_scores_by_oracles(events_path: Path, predictions_path: Path, task: Path, fold: dict, kit: dict) -> None:
    """Independent oracles, from the written files alone: the test events re-derived from test.predictions.npz by
    the kit's post-processing restated plainly equal test.events.json's; sed_eval, called directly on those events
    against the task folder's test.json, gives the recorded onset F-measure (precision, recall) and segment ER."""
    labels = [str(label) for label in pd.read_csv(task / "labelvocabulary.csv")["label"]]
    assert json.loads(predictions_path.read_text())["labels"] == labels
    with np.load(predictions_path.with_suffix(".npz"), allow_pickle=False) as npz:
        rows = {key: npz[key] for key in ("filename", "timestamp", "probabilities")}
    predicted = kit_events(rows["filename"], rows["timestamp"], rows["probabilities"], labels,
                           **fold["postprocessing"])
    written = json.loads(events_path.read_text())["files"]
    assert {name: entry["predicted"] for name, entry in written.items()} == predicted
    assert sum(map(len, predicted.values())) > 20  # the scores below rest on real detections (23 here)
    expected = sed_eval_kit_scores(predicted, json.loads((task / "test.json").read_text()), labels)
    assert fold["scores"]["event_onset_200ms_fms"] == expected["event_onset_200ms_fms"]
    assert fold["scores"]["segment_1s_er"] == expected["segment_1s_er"]
    for key, value in expected.items():
        assert kit[f"test_{key}"] == value, key


def by_time(events: list[dict]) -> list[tuple]:
    return sorted((float(e["start"]), float(e["end"]), str(e["label"])) for e in events)


def check_events_file(path: Path, task: Path, postprocessing: dict) -> None:
    """test.events.json of a trainvaltest event task: every test file, its reference events exactly as in the task
    folder's test.json, predicted events inside the file and labelled from the vocabulary."""
    assert path == path.parent / "test.events.json" and path.parent.parent.name == task.name
    events = read_events(path)
    raw = json.loads(path.read_text())
    assert raw["schema"] == "hear-atst-events/1" and set(raw) == {"schema", "task", "fold", "seed", "postprocessing",
                                                                   "files"}
    assert (events.task, events.fold, events.seed) == ("dcase2016_task2", "test", 0)
    assert events.postprocessing == postprocessing
    reference = json.loads((task / "test.json").read_text())
    assert sorted(events.files) == sorted(reference)
    vocabulary = set(pd.read_csv(task / "labelvocabulary.csv")["label"].astype(str))
    predicted = 0
    for name, entry in events.files.items():
        assert by_time(entry["reference"]) == by_time(reference[name]), name
        duration_ms = 1000.0 * sf.info(task / "16000" / "test" / name).duration
        for event in entry["predicted"]:
            assert 0.0 <= event["start"] <= event["end"] <= duration_ms and event["label"] in vocabulary
            assert event["end"] - event["start"] >= postprocessing["min_duration"]
        assert [e["start"] for e in entry["predicted"]] == sorted(e["start"] for e in entry["predicted"])
        predicted += len(entry["predicted"])
    assert predicted > 0


def test_two_checkpoints_of_one_model_get_two_results_folders(spoken_digit_task: Path, fixtures_dir: Path,
                                                             tmp_path: Path):
    """Results folders are named by the model, its options and the weights' hash: checkpoints never overwrite each
    other, and the leaderboard shows both."""
    folder = TaskFolder.load(spoken_digit_task)
    probe = ProbeConfig(protocol="linear", seeds=[0], max_epochs=5)
    outcomes = []
    for name in ("atst_clip_lightning.ckpt", "atst_clip_dino.ckpt"):
        setup = resolve_model("atst_clip", fixtures_dir / name)
        outcomes.append(run_eval(setup, folder, embeddings_dir=tmp_path / "emb", results_dir=tmp_path / "res",
                                 probe=probe, progress=False))
    ids = [outcome.results["model"]["id"] for outcome in outcomes]
    for model_id, outcome in zip(ids, outcomes, strict=True):
        assert model_id == f"atst_clip-weights={outcome.results['model']['weights_sha256'][:8]}"
        assert outcome.results_path == (tmp_path / "res" / model_id / spoken_digit_task.name
                                        / "linear-max-epochs=5" / "results.json")
        assert outcome.events_path is None and not (outcome.results_path.parent / "test.events.json").exists()
    assert ids[0] != ids[1]
    runs = collect_runs(tmp_path / "res")
    assert sorted(runs["model"]) == sorted(ids) and set(runs["model_name"]) == {"atst_clip"}


def test_runs_of_other_seeds_or_psds_never_overwrite_each_other(spoken_digit_task: Path, tmp_path: Path):
    """Every setting that changes numbers names the run folder; the same settings rerun replace their own folder
    as one unit (a failed write keeps the old run whole); the leaderboard picks the run with the most seeds."""
    folder = TaskFolder.load(spoken_digit_task)

    def run(seeds: list[int], psds: bool = True):
        return run_eval(resolve_model("mel"), folder, embeddings_dir=tmp_path / "emb", results_dir=tmp_path / "res",
                        probe=ProbeConfig(protocol="linear", seeds=seeds, max_epochs=3, psds=psds), progress=False)

    three, one, no_psds = run([0, 1, 2]), run([0]), run([0], psds=False)
    assert [o.results_path.parent.name for o in (three, one, no_psds)] == [
        "linear-max-epochs=3-seeds=0-2", "linear-max-epochs=3", "linear-max-epochs=3-no-psds"]
    assert read_results(three.results_path)["protocol"]["seeds"] == [0, 1, 2]  # not replaced by the 1-seed run
    notes: list[str] = []
    runs = collect_runs(tmp_path / "res", notes=notes)
    assert runs["path"].tolist() == [str(three.results_path)] and runs["seeds"].tolist() == [3]
    assert notes == [f"mel spoken_digit-small linear-max-epochs=3: {three.results_path} (3 seeds, the most; 2 other "
                     "run(s) left out)"]

    before = {p.name: p.read_bytes() for p in one.results_path.parent.iterdir()}
    import evaluation.runner as runner

    def full_disk(path, data):
        if Path(path).name != "results.json":
            return write_json(path, data)
        with atomic_write(path) as handle:  # what a full disk raises: no file name
            handle.write(b"{")
            raise OSError(28, "No space left on device")

    write_json, runner.write_json_atomic = runner.write_json_atomic, full_disk
    try:
        with pytest.raises(OSError) as caught:
            run([0])
    finally:
        runner.write_json_atomic = write_json
    assert str(caught.value) == f"[Errno 28] No space left on device: '{one.results_path}'"  # names the file
    assert {p.name: p.read_bytes() for p in one.results_path.parent.iterdir()} == before  # the old run, whole
    assert not [p for p in one.results_path.parent.parent.iterdir() if p.name.endswith(".tmp")]  # no staging
    again = run([0])
    assert again.results_path == one.results_path and read_results(again.results_path)["date"] >= one.results["date"]


def test_an_unwritable_results_folder_fails_before_any_work(spoken_digit_task: Path, tmp_path: Path):
    """(A file where the results folder should be: unwritable even for root, who ignores read-only modes.)"""
    (tmp_path / "blocked").write_text("a file, not a folder")
    code, _, stderr = invoke("eval", "--model", "mel", "--task", "spoken_digit", "--tasks-dir",
                             str(spoken_digit_task.parent), "--embeddings-dir", str(tmp_path / "embeddings"),
                             "--results-dir", str(tmp_path / "blocked" / "results"))
    assert code == 2
    assert stderr.startswith(f"error: {tmp_path / 'blocked' / 'results' / 'mel' / spoken_digit_task.name}: cannot "
                             "write there (Not a directory)")
    assert not (tmp_path / "embeddings").exists()  # nothing embedded


def test_eval_cli_grid_option_reaches_the_protocol(spoken_digit_task: Path, tmp_path: Path):
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--grid", "faster"))
    assert code == 0, stderr
    task_dir = tmp_path / "results" / "mel" / spoken_digit_task.name
    results = read_results(task_dir / "hear-grid=faster" / "results.json")
    assert results["protocol"]["grid"] == "faster" and results["protocol"]["grid_points"] == 8
    assert results["protocol"]["run"] == "hear-grid=faster"  # the leaderboard's protocol label
    assert results["runs"][0]["selected_hyperparameters"]["max_epochs"] == 10  # every faster point runs 10 epochs
    # another protocol on the same model and task gets its own folder: nothing is overwritten
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--protocol", "linear"))
    assert code == 0, stderr
    assert read_results(task_dir / "hear-grid=faster" / "results.json") == results
    assert read_results(task_dir / "linear" / "results.json")["protocol"]["name"] == "linear"
    assert sorted(collect_runs(tmp_path / "results")["protocol"]) == ["hear-grid=faster", "linear"]
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--grid", "huge"))
    assert code == 2 and "huge" in stderr
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--protocol", "linear",
                                        "--linear-lr", "3e-5"))
    assert code == 0, stderr
    assert read_results(task_dir / "linear-lr=3e-05" / "results.json")["runs"][0]["selected_hyperparameters"][
        "lr"] == 3e-5
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--linear-lr", "3e-5"))
    assert code == 2 and stderr.strip() == "error: --linear-lr applies to --protocol linear only"
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--protocol", "linear",
                                        "--no-shuffle", "--grid-points", "2"))
    assert code == 2 and stderr.strip() == "error: --no-shuffle, --grid-points apply to --protocol hear only"
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path / "early",
                                        "--grid-points", "2", "--max-epochs", "2", "--grid", "fast"))
    assert code == 2 and "max_epochs=2 is below this grid point's validation interval" in stderr
    assert not (tmp_path / "early").exists()  # refused before embedding
    code, _, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--grid-points", "2",
                                        "--max-epochs", "10", "--grid", "fast"))
    assert code == 0, stderr
    smoke = read_results(task_dir / "hear-grid=fast-points=2-max-epochs=10" / "results.json")["runs"][0]
    assert len(smoke["grid"]) == 2 and max(fold["epoch"] for fold in smoke["folds"].values()) < 10


def test_embed_cli_and_tasks_dir_from_the_environment(spoken_digit_task: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HEAR_ATST_TASKS", str(spoken_digit_task.parent))
    code, stdout, stderr = invoke("embed", "--model", "mel", "--task", spoken_digit_task.name,
                                  "--embeddings-dir", str(tmp_path))
    assert code == 0, stderr
    path = tmp_path / "hear_atst.mel" / spoken_digit_task.name
    assert stdout.strip().splitlines()[-1] == f"{spoken_digit_task.name} embeddings: {path}"
    assert (path / ".done.embeddings").is_file()


def test_missing_weights_is_one_clear_message(esc10_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HEAR_ATST_WEIGHTS", raising=False)
    code, stdout, stderr = invoke("eval", "--model", "atst_frame", "--task", "esc50",
                                  "--tasks-dir", str(esc10_task.parent))
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: atst_frame: no weights file given.")
    assert "1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ" in stderr and "--weights FILE" in stderr
    assert "Traceback" not in stderr
    code, _, stderr = invoke("eval", "--model", "asit", "--task", "esc50", "--tasks-dir", str(esc10_task.parent),
                             "--weights", str(tmp_path / "nope.pt"))
    assert code == 2 and stderr.strip() == f"error: asit: weights file {tmp_path / 'nope.pt'} does not exist"


def test_missing_or_unknown_task_and_model_messages(tmp_path: Path, esc10_task: Path):
    code, _, stderr = invoke("eval", "--model", "mel", "--task", "dcase2016", "--tasks-dir", str(tmp_path))
    assert code == 2
    assert stderr.startswith(f"error: task dcase2016_task2 is not prepared in {tmp_path}")
    assert "hear-atst prepare dcase2016_task2 --source PATH" in stderr
    from tasks.registry import get_spec

    unfinished = tmp_path / get_spec("dcase2016_task2").folder_name(None)  # a prepare run killed early
    unfinished.mkdir()
    (unfinished / ".prepare-pending.json").write_text("{}")
    for task in ("dcase2016", unfinished.name):
        code, _, stderr = invoke("embed", "--model", "mel", "--task", task, "--tasks-dir", str(tmp_path))
        assert code == 2 and stderr.strip() == (f"error: the preparation of {unfinished} was interrupted "
                                                "(.prepare-pending.json remains in it): rerun the same `hear-atst "
                                                "prepare` command to finish it")
    code, _, stderr = invoke("eval", "--model", "mel", "--task", "nope", "--tasks-dir", str(tmp_path))
    assert code == 2 and stderr.startswith("error: no task 'nope'")
    code, _, stderr = invoke("eval", "--model", "wav2vec9", "--task", "esc50", "--tasks-dir", str(esc10_task.parent))
    assert code == 2 and stderr.startswith("error: unknown model 'wav2vec9'; known models: ")
    code, _, stderr = invoke("eval", "--model", "mel", "--task", "esc50", "--tasks-dir", str(esc10_task.parent),
                             "--weights", str(esc10_task / "task_metadata.json"))
    assert code == 2 and stderr.startswith("error: model mel takes no weights file")
    if not torch.cuda.is_available():
        code, _, stderr = invoke("eval", "--model", "mel", "--task", "esc50", "--tasks-dir", str(esc10_task.parent),
                                 "--device", "cuda")
        assert code == 2 and stderr.startswith("error: --device cuda: no CUDA device is available")


def test_broken_task_folder_lists_its_problems(spoken_digit_task: Path, tmp_path: Path):
    tasks = tmp_path / "tasks"
    copy = Path(shutil.copytree(spoken_digit_task, tasks / spoken_digit_task.name))
    victims = sorted((copy / "16000" / "fold03").glob("*.wav"))[:2]
    for victim in victims:
        victim.unlink()
    code, stdout, stderr = invoke(*eval_args("spoken_digit", tasks, tmp_path))
    assert code == 2 and stdout == ""
    assert f"task folder {copy} has 2 problem(s)" in stderr
    for victim in victims:
        assert f"{victim}: missing (listed in the split file)" in stderr
    assert not (tmp_path / "results").exists()


def test_bad_model_options_are_one_clear_message(esc10_task: Path, fixtures_dir: Path):
    tasks = str(esc10_task.parent)
    code, _, stderr = invoke("eval", "--model", "mel", "--task", "esc50", "--tasks-dir", tasks,
                             "--model-option", "blocks=1")
    assert code == 2 and stderr.strip() == "error: model mel has no option blocks; its options are: none"
    code, _, stderr = invoke("embed", "--model", "atst_frame", "--task", "esc50", "--tasks-dir", tasks,
                             "--model-option", "precision=bf16", "--model-option", "random_weights=true")
    assert code == 2 and stderr.strip() == (
        "error: set the model's precision with --precision, not --model-option precision=...")
    code, _, stderr = invoke("eval", "--model", "asit", "--task", "esc50", "--tasks-dir", tasks,
                             "--model-option", "size=base", "--model-option", "blocs=2")
    assert code == 2 and stderr.strip() == (
        "error: model asit has no option blocs, size; its options are: blocks, random_weights, sample_rate")
    weights = fixtures_dir / "atst_frame_lightning.ckpt"
    code, _, stderr = invoke("eval", "--model", "atst_frame", "--task", "esc50", "--tasks-dir", tasks,
                             "--weights", str(weights), "--model-option", "random_weights=true")
    assert code == 2 and stderr.strip() == (
        f"error: --weights {weights} and random_weights=true exclude each other: drop one")
    for given, parsed in (("no", "'no'"), ('"false"', "'false'")):  # text is never read as true (it was)
        code, _, stderr = invoke("embed", "--model", "atst_frame", "--task", "esc50", "--tasks-dir", tasks,
                                 "--model-option", f"random_weights={given}", "--model-option", "size=small")
        assert code == 2 and stderr.strip() == f"error: model atst_frame: random_weights={parsed}: give true or false"


def test_model_options_parse_json_values():
    assert parse_model_options(["blocks=1", "name=base", "layers=[1, 12]", "random_weights=true", "x=1e-3"]) == {
        "blocks": 1, "name": "base", "layers": [1, 12], "random_weights": True, "x": 1e-3}
    assert parse_model_options(["random_weights=True", "a=FALSE", "b=no"]) == {"random_weights": True, "a": False,
                                                                              "b": "no"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_model_options(["blocks"])


def _chain_twice(model: str, task: Path, root: Path, probe: ProbeConfig) -> tuple[dict, dict]:
    """The whole chain twice from scratch (fresh embeddings and results); the embedding matrices must match byte
    for byte. Returns both results documents minus date and wall times."""
    setup, folder = resolve_model(model), TaskFolder.load(task)
    runs = [run_eval(setup, folder, embeddings_dir=root / f"emb{i}", results_dir=root / f"res{i}", probe=probe,
                     progress=False) for i in range(2)]
    paths = [Path(json.loads(r.predicted_scores_path.read_text())["embedding_path"]) for r in runs]
    matrices = sorted(p.name for p in paths[0].glob("*.embeddings.npy"))
    assert matrices == sorted(p.name for p in paths[1].glob("*.embeddings.npy")) and matrices
    for name in matrices:
        assert (paths[0] / name).read_bytes() == (paths[1] / name).read_bytes(), name
    first, second = (without_run_details(r.results) for r in runs)
    return first, second


@pytest.mark.slow
@pytest.mark.parametrize("model, low, high", [("mel", 0.4, 0.95), ("crepe", 0.25, 0.9)])
def test_esc10_five_fold_chain_with_the_hear_protocol(model: str, low: float, high: float, esc10_task: Path,
                                                       tmp_path: Path):
    """ESC-10 (5 folds) with the kit's protocol (grid of 8 on fold 0, 500 epochs max), twice: sane and identical."""
    first, second = _chain_twice(model, esc10_task, tmp_path, ProbeConfig(seeds=[0]))
    assert first == second
    assert first["protocol"] == {"name": "hear", "run": "hear", "shuffle": True, "stop_on_non_finite": False,
                                 "seeds": [0], "grid_points": 8, "grid": "default", "precision": "fp32"}
    assert low < first["score"]["mean"] < high and first["score"]["n"] == 5


@pytest.mark.slow
def test_dcase_chain_with_the_linear_probe(dcase2016_small_task: Path, tmp_path: Path):
    """DCASE 2016 (30 s scenes) through the event path with PSDS, uncapped linear probe, twice: sane and identical."""
    first, second = _chain_twice("mel", dcase2016_small_task, tmp_path, ProbeConfig(protocol="linear", seeds=[0]))
    assert first == second
    assert 0.02 < first["score"]["mean"] < 0.9
    assert "psds1" in first["scores"]


def test_summary_line_counts_the_nan_scores_left_out_of_the_mean():
    from evaluation.runner import EvalOutcome

    folds = {f"fold0{i}": {} for i in range(5)}
    results = {"task": {"name": "esc50"}, "primary_score": "top1_acc", "protocol": {"seeds": [0, 1]},
               "runs": [{"folds": folds}, {"folds": folds}], "score": {"mean": 0.5, "std": 0.125, "n": 8}}
    outcome = EvalOutcome(results=results, results_path=Path("r"), predicted_scores_path=Path("p"))
    assert outcome.summary_line() == ("esc50 top1_acc = 0.5000 ± 0.1250 (5 folds × 2 seeds, 2 NaN score(s) left out "
                                      "of the mean)")
    results["score"]["n"] = 10
    assert outcome.summary_line() == "esc50 top1_acc = 0.5000 ± 0.1250 (5 folds × 2 seeds)"
