"""The plan and time estimate of a run: arithmetic on known inputs, the calibration's sizes on a real model, the
embedding stage's file work timed by the stage's own functions (and counted as the stage does it), and
``eval --dry-run`` on a real task (the plan printed, nothing embedded, probed or written)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_own_model import subset_task
from test_runner import eval_args, invoke

import evaluation.embeddings as embeddings
import evaluation.estimate as estimate
from evaluation.embeddings import ModelSetup, embed_task
from evaluation.estimate import (
    BankWork,
    EmbedEstimate,
    FileCosts,
    ProbeEstimate,
    RunEstimate,
    calibrate_files,
    calibrate_model,
    earliest_stop,
    estimate_run,
    faster_options,
    head_epochs,
)
from evaluation.protocol import ProbeConfig
from evaluation.runner import resolve_model
from evaluation.taskfolder import TaskFolder


def test_expected_epochs_lie_between_the_earliest_stop_and_the_cap():
    assert head_epochs(500, 3, 20) == (63 + 0.5 * 437, 500)  # the HEAR grid: earliest stop at epoch 63
    assert head_epochs(500, 10, 20) == (210 + 0.5 * 290, 500)  # DCASE's validation every 10 epochs
    assert head_epochs(40, 3, 20) == (40.0, 40)  # a cap below the earliest stop: every head trains it all
    assert head_epochs(200, 1, 20) == (21 + 0.5 * 179, 200)  # the linear probe
    assert earliest_stop(500, 3, 20) == 63 and earliest_stop(40, 3, 20) == 40


def test_bank_probe_and_embedding_seconds_on_known_inputs():
    bank = BankWork(heads=4, max_epochs=40, check_every=4, patience=20, epoch_seconds=0.5, check_seconds=2.0)
    assert bank.seconds() == (4 * 40 * 1.0, 4 * 40 * 1.0)  # 0.5 s an epoch + 2 s a check every 4 epochs
    stopping = BankWork(heads=2, max_epochs=500, check_every=3, patience=20, epoch_seconds=0.1, check_seconds=0.3)
    assert stopping.seconds() == pytest.approx((2 * 281.5 * 0.2, 2 * 500 * 0.2))
    probe = ProbeEstimate(protocol="hear", rows={"a": 10}, dims=8, train_rows=6, grid_points=2, folds=3, seeds=3,
                          grid=(bank,), retrain=(stopping,))
    assert probe.seconds() == pytest.approx((3 * (160 + 112.6), 3 * (160 + 200)))
    assert bank.least_seconds() == bank.seconds()[0]  # capped below the earliest stop: no range
    assert stopping.least_seconds() == pytest.approx(2 * 63 * 0.2)  # every head stops at epoch 63
    assert probe.least_seconds() == pytest.approx(3 * (160 + 25.2))
    files = FileCosts(read=0.001, write=0.004, collect=0.002, record=0.003, split=0.05, folder=0.2)
    embed = EmbedEstimate(clips=100, audio_seconds=500.0, rate=16000, cached=False, load_seconds=2.0,
                          audio_per_second=50.0, batches=10, splits=2, files=files)
    assert embed.file_seconds() == pytest.approx(0.2 + 2 * 0.05 + 10 * 0.003 + 100 * (0.001 + 0.004 + 0.002))
    assert embed.seconds() == pytest.approx(2.0 + 10.0 + embed.file_seconds())
    assert EmbedEstimate(clips=100, audio_seconds=500.0, rate=None, cached=True).seconds() == 0.0


def _run(probe_seconds: float, on_cpu: bool) -> RunEstimate:
    bank = BankWork(heads=1, max_epochs=10, check_every=1, patience=20, epoch_seconds=probe_seconds / 20,
                    check_seconds=probe_seconds / 20)
    probe = ProbeEstimate(protocol="hear", rows={"fold00": 20, "fold01": 20, "fold02": 20}, dims=128, train_rows=20,
                          grid_points=1, folds=3, seeds=1, grid=(bank,), retrain=())
    embed = EmbedEstimate(clips=60, audio_seconds=30.0, rate=16000, cached=False, load_seconds=1.0,
                          audio_per_second=30.0, batches=1, splits=3,
                          files=FileCosts(read=0.0004, write=0.0016, collect=0.0005, record=0.002, split=0.004,
                                          folder=0.03))
    config, setup = ProbeConfig(grid_points=1), ModelSetup(name="mel", module="hear_atst.mel")
    return RunEstimate(task="t", model_id="mel", device="cpu (x)" if on_cpu else "cuda (y)", on_cpu=on_cpu,
                       embed=embed, probe=probe, faster=faster_options(config, setup))


def test_the_plan_names_faster_options_only_past_an_hour_on_the_cpu():
    short = _run(600.0, on_cpu=True).lines()
    assert short == [
        "plan: mel on t, device cpu (x)",
        "  embed: 60 clips, 30s of audio at 16000 Hz: ~2s (the model: 30.0 s of audio per second, loading it 1.0 s; "
        "the files: 0.2 s, a clip read 0.4 ms, written 1.6 ms, collected 0.5 ms)",
        "  probe: hear protocol, 1 grid point(s) on the first fold, then the chosen one on 2 other fold(s), 1 seed(s); "
        "rows x dims 60 x 128 (fold00 20, fold01 20, fold02 20; the first fold trains on 20)",
        "  probe: ~10m00s (at most 10m00s if no head stops early)",
        "  total: ~10m02s (at most 10m02s)",
    ]
    long = _run(4000.0, on_cpu=True).lines()
    assert long[-1].startswith("  note: over an hour on the CPU; faster, if the numbers they give suit you: "
                               "--device cuda")
    for option in ("--probe-precision bf16", "--precision bf16 (the model)", "--protocol linear",
                   "--grid fast / --grid faster"):
        assert option in long[-1]
    assert "--grid-points" not in long[-1]  # already one point
    assert not any("note" in line for line in _run(4000.0, on_cpu=False).lines())  # a GPU run: no advice


def test_faster_options_leave_out_what_the_run_already_uses():
    setup = ModelSetup(name="mel", module="hear_atst.mel", precision="bf16", device="cuda")
    assert faster_options(ProbeConfig(protocol="linear", precision="bf16"), setup) == ()
    assert faster_options(ProbeConfig(grid="fast"), setup) == (
        "--probe-precision bf16", "--protocol linear", "--grid-points N (fewer than 8)")


def test_calibration_measures_the_models_sizes():
    """mel: 64-d timestamp embeddings every 40 ms (25 a second), 128-d scene embeddings."""
    event = calibrate_model(resolve_model("mel"), 30.0, event=True)
    assert (event.rate, event.dims, event.frames_per_second) == (16000, 64, 25.0)
    assert event.audio_per_second > 1.0 and event.load_seconds >= 0
    scene = calibrate_model(resolve_model("mel"), 0.56, event=False)
    assert (scene.dims, scene.frames_per_second) == (128, None)


def _slowed(call: Callable[..., Any], seconds: float, seen: list[tuple[Any, ...]]) -> Callable[..., Any]:
    """``call`` made ``seconds`` slower, its arguments kept in ``seen``."""
    def slow(*args: Any) -> Any:
        seen.append(args)
        time.sleep(seconds)
        return call(*args)
    return slow


def test_file_calibration_times_the_stages_functions_in_a_scratch_folder_it_removes(
        spoken_digit_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The timed steps are the stage's own read and write functions (made 5 ms slower here, the figures grow by
    as much), on the embeddings folder's file system (its nearest existing folder), and nothing is left behind."""
    folder = TaskFolder.load(spoken_digit_task)
    writes: list[tuple[Any, ...]] = []
    reads: list[tuple[Any, ...]] = []
    monkeypatch.setattr(estimate, "write_clip", _slowed(embeddings.write_clip, 0.005, writes))
    monkeypatch.setattr(estimate, "read_clip", _slowed(embeddings.read_clip, 0.005, reads))
    lengths = {split: dict.fromkeys(folder.labels[split], 8960) for split in folder.splits}
    out_dir = tmp_path / "embeddings" / "hear_atst.mel" / folder.name
    costs = calibrate_files(resolve_model("mel"), folder, lengths, 16000, 128, None, out_dir)
    assert costs.write >= 0.005 and costs.read >= 0.005
    assert costs.collect >= 0 and min(costs.record, costs.split, costs.folder) > 0
    assert 1 <= len(writes) == len(reads) <= 20
    first = sorted(folder.labels["fold00"])
    assert [args[1] for args in writes] == first[:len(writes)]  # the task's own clips, in order, with their labels
    assert [args[4] for args in writes] == [folder.labels["fold00"][name] for name in first[:len(writes)]]
    assert all(args[2].shape == (128,) and args[3] is None for args in writes)  # scene: one [D] embedding a clip
    assert all(args[0].parent.parent.parent == tmp_path for args in writes)  # <scratch>/<task>/<split>
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone, and no embeddings folder was made


def test_file_calibration_of_an_event_task_writes_the_calibrated_frames(
        dcase2016_small_task: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    task = subset_task(dcase2016_small_task, tmp_path_factory.mktemp("dcase") / dcase2016_small_task.name,
                       per_split=2, seconds=2.5)
    folder = TaskFolder.load(task)
    writes: list[tuple[Any, ...]] = []
    monkeypatch.setattr(estimate, "write_clip", _slowed(embeddings.write_clip, 0.0, writes))
    lengths = {split: dict.fromkeys(folder.labels[split], 40000) for split in folder.splits}
    out = tmp_path_factory.mktemp("out")
    costs = calibrate_files(resolve_model("mel"), folder, lengths, 16000, 64, 25.0, out / "embeddings")
    assert len(writes) == 2 and costs.collect >= 0  # the first split's two clips
    for _, _, embedding, timestamps, _ in writes:
        assert embedding.shape == (62, 64)  # 25 frames a second of 2.5 s, rounded as the plan's rows are
        np.testing.assert_allclose(timestamps, (np.arange(62) + 0.5) * 40.0)
    assert list(out.iterdir()) == []


def test_the_estimate_counts_the_file_work_the_stage_does(spoken_digit_task: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    """Embedding the task does each timed step exactly as often as the estimate counts it: a clip read and
    written per clip, a manifest append per batch, the arrays of each split, the folder prepared and closed once."""
    folder, setup = TaskFolder.load(spoken_digit_task), resolve_model("mel")
    plan = estimate_run(setup, folder, tmp_path / "embeddings", ProbeConfig(protocol="linear", max_epochs=2)).embed
    assert (plan.clips, plan.batches, plan.splits) == (100, 5, 5)
    assert plan.file_seconds() >= 100 * (plan.files.read + plan.files.write) > 0
    calls: Counter[str] = Counter()
    for name in ("read_clip", "write_clip", "append_records", "write_split_arrays", "prepare_folder",
                 "close_folder"):
        function = getattr(embeddings, name)
        monkeypatch.setattr(embeddings, name, lambda *args, _f=function, _n=name: (calls.update([_n]), _f(*args))[1])
    embed_task(setup, folder, tmp_path / "embeddings", progress=False)
    assert calls == {"read_clip": plan.clips, "write_clip": plan.clips, "append_records": plan.batches,
                     "write_split_arrays": plan.splits, "prepare_folder": 1, "close_folder": 1}


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_dry_run_prints_the_plan_and_writes_nothing(spoken_digit_task: Path, tmp_path: Path):
    before = _tree(spoken_digit_task)
    code, stdout, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--dry-run"))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("plan: mel on spoken_digit-1.0.9-small, device cpu (")
    assert lines[1].startswith("  embed: 100 clips, 56s of audio at 16000 Hz: ~")
    assert lines[2] == ("  probe: hear protocol, 8 grid point(s) on the first fold, then the chosen one on 4 other "
                        "fold(s), 1 seed(s); rows x dims 100 x 128 (fold00 20, fold01 20, fold02 20, fold03 20, "
                        "fold04 20; the first fold trains on 60)")
    assert lines[3].startswith("  probe: ~") and lines[4].startswith("  total: ~")
    assert _tree(tmp_path) == []  # the files' timing left no scratch folder, made no embeddings folder
    assert _tree(spoken_digit_task) == before

    code, _, stderr = invoke("embed", "--model", "mel", "--task", "spoken_digit", "--tasks-dir",
                             str(spoken_digit_task.parent), "--embeddings-dir", str(tmp_path / "embeddings"),
                             "--quiet")
    assert code == 0, stderr
    code, stdout, stderr = invoke(*eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--dry-run",
                                             "--protocol", "linear", "--seeds", "3"))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[1] == "  embed: 100 clips, 56s of audio: cached"  # rows and dims read from the cache
    assert lines[2].startswith("  probe: linear protocol, 1 grid point(s) on the first fold, then the chosen one on "
                               "4 other fold(s), 3 seed(s); rows x dims 100 x 128 (")
    assert not (tmp_path / "results").exists()
