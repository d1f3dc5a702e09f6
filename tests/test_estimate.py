"""The plan and time estimate of a run: arithmetic on known inputs, the calibration's sizes on a real model, and
``eval --dry-run`` on a real task (the plan printed, nothing embedded, probed or written)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_runner import eval_args, invoke

from evaluation.embeddings import ModelSetup
from evaluation.estimate import (
    BankWork,
    EmbedEstimate,
    ProbeEstimate,
    RunEstimate,
    calibrate_model,
    faster_options,
    head_epochs,
)
from evaluation.protocol import ProbeConfig
from evaluation.runner import resolve_model


def test_expected_epochs_lie_between_the_earliest_stop_and_the_cap():
    assert head_epochs(500, 3, 20) == (63 + 0.5 * 437, 500)  # the HEAR grid: earliest stop at epoch 63
    assert head_epochs(500, 10, 20) == (210 + 0.5 * 290, 500)  # DCASE's validation every 10 epochs
    assert head_epochs(40, 3, 20) == (40.0, 40)  # a cap below the earliest stop: every head trains it all
    assert head_epochs(200, 1, 20) == (21 + 0.5 * 179, 200)  # the linear probe


def test_bank_probe_and_embedding_seconds_on_known_inputs():
    bank = BankWork(heads=4, max_epochs=40, check_every=4, patience=20, epoch_seconds=0.5, check_seconds=2.0)
    assert bank.seconds() == (4 * 40 * 1.0, 4 * 40 * 1.0)  # 0.5 s an epoch + 2 s a check every 4 epochs
    stopping = BankWork(heads=2, max_epochs=500, check_every=3, patience=20, epoch_seconds=0.1, check_seconds=0.3)
    assert stopping.seconds() == pytest.approx((2 * 281.5 * 0.2, 2 * 500 * 0.2))
    probe = ProbeEstimate(protocol="hear", rows={"a": 10}, dims=8, train_rows=6, grid_points=2, folds=3, seeds=3,
                          grid=(bank,), retrain=(stopping,))
    assert probe.seconds() == pytest.approx((3 * (160 + 112.6), 3 * (160 + 200)))
    embed = EmbedEstimate(clips=100, audio_seconds=500.0, rate=16000, cached=False, load_seconds=2.0,
                          audio_per_second=50.0, read_seconds=0.01)
    assert embed.seconds() == pytest.approx(2.0 + 10.0 + 2 * 100 * 0.01)
    assert EmbedEstimate(clips=100, audio_seconds=500.0, rate=None, cached=True).seconds() == 0.0


def _run(probe_seconds: float, on_cpu: bool) -> RunEstimate:
    bank = BankWork(heads=1, max_epochs=10, check_every=1, patience=20, epoch_seconds=probe_seconds / 20,
                    check_seconds=probe_seconds / 20)
    probe = ProbeEstimate(protocol="hear", rows={"fold00": 20, "fold01": 20, "fold02": 20}, dims=128, train_rows=20,
                          grid_points=1, folds=3, seeds=1, grid=(bank,), retrain=())
    embed = EmbedEstimate(clips=60, audio_seconds=30.0, rate=16000, cached=False, load_seconds=1.0,
                          audio_per_second=30.0)
    config, setup = ProbeConfig(grid_points=1), ModelSetup(name="mel", module="hear_atst.mel")
    return RunEstimate(task="t", model_id="mel", device="cpu (x)" if on_cpu else "cuda (y)", on_cpu=on_cpu,
                       embed=embed, probe=probe, faster=faster_options(config, setup))


def test_the_plan_names_faster_options_only_past_an_hour_on_the_cpu():
    short = _run(600.0, on_cpu=True).lines()
    assert short == [
        "plan: mel on t, device cpu (x)",
        "  embed: 60 clips, 30s of audio at 16000 Hz: ~2s (the model: 30.0 s of audio per second; loading it 1.0 s; "
        "reading a clip 0.0 ms)",
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
    assert not (tmp_path / "embeddings").exists() and not (tmp_path / "results").exists()
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
