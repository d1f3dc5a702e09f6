"""Probe progress: the events a real probe stage emits (counts and phases), the state's bookkeeping of the time
left, the plain periodic lines off a terminal, and ``eval --quiet``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from probe_helpers import esc10_task
from test_runner import eval_args, invoke

from evaluation.progress import (
    BankStarted,
    EpochFinished,
    PhaseFinished,
    PhaseStarted,
    ProbeFinished,
    ProbePlan,
    ProgressDisplay,
    ProgressEvent,
    ProgressState,
    StepFinished,
    format_duration,
    phase_line,
)
from evaluation.protocol import ProbeConfig, evaluate


def run_recorded(data_dir: Path, config: ProbeConfig) -> tuple[list[ProgressEvent], dict]:
    events: list[ProgressEvent] = []
    result = evaluate(esc10_task(data_dir), config, progress=events.append)
    return events, result.to_json()


@pytest.fixture(scope="module")
def grid_run(data_dir):
    """Three grid points capped at 6 epochs (no head can stop early before epoch 63), two seeds."""
    return run_recorded(data_dir, ProbeConfig(grid_points=3, max_epochs=6, seeds=[3, 4]))


def test_a_probe_stage_announces_its_plan_phases_and_every_epoch(grid_run):
    events, results = grid_run
    assert events[0] == ProbePlan(task="esc10", protocol="hear", seeds=(3, 4),
                                  folds=("fold00", "fold01", "fold02", "fold03", "fold04"), grid_points=3,
                                  grid_head_epochs=18, retrain_head_epochs=24)
    assert isinstance(events[-1], ProbeFinished) and events[-1].seconds > 0
    phases = [e for e in events if isinstance(e, PhaseStarted | PhaseFinished)]
    assert [(type(e).__name__, e.seed, e.phase) for e in phases] == [
        (kind, seed, phase) for seed in (3, 4) for phase in ("grid", "retrain")
        for kind in ("PhaseStarted", "PhaseFinished")]
    assert phases[0] == PhaseStarted(seed=3, phase="grid", folds=("fold00",), heads=3, head_epochs=18)
    assert phases[2] == PhaseStarted(seed=3, phase="retrain", folds=("fold01", "fold02", "fold03", "fold04"),
                                     heads=4, head_epochs=24)
    for run, finished in zip(results["runs"], [p for p in phases if isinstance(p, PhaseFinished)][::2], strict=True):
        scores = [point["validation_score"] for point in run["grid"]]
        assert finished.chosen == scores.index(max(scores)) and finished.best == max(scores)
    epochs = [e for e in events if isinstance(e, EpochFinished)]
    assert sum(e.trained for e in epochs) == 2 * (18 + 24)
    assert all(e.stopped == 0 and e.trained == e.training for e in epochs)
    banks = [e for e in events if isinstance(e, BankStarted)]
    assert sum(b.heads for b in banks) == 2 * (3 + 4) and all(b.max_epochs == 6 and b.maximize for b in banks)
    assert [e.epoch for e in epochs] == [n for _ in banks for n in range(1, 7)]
    assert all(e.best is None for e in epochs if e.epoch < 3)  # validated every 3rd epoch
    assert all(0 < e.best <= 1 for e in epochs if e.epoch >= 3)
    steps = [e for e in events if isinstance(e, StepFinished)]  # 120 training rows: one batch an epoch
    assert len(steps) == len(epochs) and all((e.step, e.steps) == (1, 1) for e in steps)
    assert [e.heads for e in steps] == [e.trained for e in epochs]


def test_the_state_counts_head_epochs_and_early_stops_exactly(data_dir):
    """The kit's faster grid (patience 1 or 3, checks every epoch, 10 epochs) stops heads early: the bound shrinks
    by the epochs they skip and ends equal to the work done, which equals the epochs results.json records."""
    events, results = run_recorded(data_dir, ProbeConfig(grid="faster", grid_points=4, seeds=[0]))
    run = results["runs"][0]
    epochs_run = [point["epochs_run"] for point in run["grid"]] + [
        fold["epochs_run"] for name, fold in run["folds"].items() if name != "fold00"]
    trained = sum(epochs_run)
    state = ProgressState()
    bounds = []
    for event in events:
        state.update(event)
        bounds.append(state.bound)
    assert bounds[0] == (4 + 4) * 10 and state.done == trained == state.bound < 80
    assert state.finished_bound == 80 and state.finished_used == trained
    stopped_early = sum(e.trained - e.training for e in events if isinstance(e, EpochFinished))
    assert stopped_early >= sum(n < 10 for n in epochs_run) > 0  # (a head may also stop at its last epoch)
    assert state.line().endswith(" · done")


def _synthetic_stage() -> list[ProgressEvent]:
    """A grid phase of 2 heads x 10 epochs, one head stopping after epoch 4."""
    events: list[ProgressEvent] = [
        ProbePlan(task="t", protocol="hear", seeds=(0,), folds=("f0", "f1"), grid_points=2, grid_head_epochs=20,
                  retrain_head_epochs=10),
        PhaseStarted(seed=0, phase="grid", folds=("f0",), heads=2, head_epochs=20),
        BankStarted(heads=2, max_epochs=10, maximize=True)]
    for epoch in range(1, 11):
        events.append(EpochFinished(epoch=epoch, max_epochs=10, trained=2 if epoch <= 4 else 1,
                                    training=2 if epoch < 4 else 1, stopped=0 if epoch < 4 else 1, best=0.5))
    return events


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_left_is_the_measured_rate_times_the_head_epochs_left():
    clock = Clock()
    state = ProgressState(clock)
    events = _synthetic_stage()
    for event in events[:3]:
        state.update(event)
    assert state.seconds_left() == (None, None) and state.bound == 30
    for event in events[3:7]:  # epochs 1-4, 8 head-epochs in 8 s; a head stopped after epoch 4
        clock.now += 2.0
        state.update(event)
    assert state.done == 8 and state.bound == 30 - 6
    assert state.seconds_left() == (16.0, 16.0)  # (24 - 8) head-epochs left at 1 s each
    line = state.line()
    assert line == ("probe t · seed 0 (1/1) · grid on f0 · epoch 4/10 · heads 1 training, 1 stopped early (of 2) · "
                    "best 0.5000 · 8s elapsed · left <= 16s")
    for event in events[7:]:
        clock.now += 1.0
        state.update(event)
    finished = PhaseFinished(seed=0, phase="grid", folds=("f0",), heads=2, seconds=14.0, chosen=1, best=0.5)
    state.update(finished)
    assert (state.done, state.bound, state.finished_used, state.finished_bound) == (14, 24, 14, 20)
    expected, at_most = state.seconds_left()
    assert at_most == pytest.approx(10.0) and expected == pytest.approx(10.0 * 14 / 20)  # 10 head-epochs at 1 s
    assert phase_line(finished) == "seed 0: 2 grid point(s) trained on f0 in 14 s; point 1 chosen (validation 0.5000)"


def test_an_epoch_under_way_counts_by_its_batches():
    clock = Clock()
    state = ProgressState(clock)
    for event in _synthetic_stage()[:4]:  # plan, phase, bank, epoch 1 (2 head-epochs) at t = 1 .. 4
        clock.now += 1.0
        state.update(event)
    clock.now = 4.0
    state.update(StepFinished(step=1, steps=4, heads=2))  # a quarter of epoch 2: half a head-epoch more
    # the plan came at t = 1: 3 s for 2.5 head-epochs, 30 - 2.5 left
    assert state.seconds_left() == pytest.approx((27.5 * 1.2, 27.5 * 1.2))
    assert " · epoch 2/10 (batch 1/4) · heads 2 training, 0 stopped early (of 2) · " in state.line()


def test_off_a_terminal_the_display_prints_phase_lines_and_a_status_line_every_interval():
    clock, stream = Clock(), io.StringIO()
    display = ProgressDisplay(stream=stream, interval=5.0, clock=clock)
    display.state.clock = clock
    assert not display.live_mode  # a StringIO is not a terminal
    for event in _synthetic_stage():
        clock.now += 2.0
        display(event)
    display(PhaseFinished(seed=0, phase="grid", folds=("f0",), heads=2, seconds=26.0, chosen=0, best=0.5))
    lines = stream.getvalue().splitlines()
    # events every 2 s from t = 2 (the plan starts the clock; epochs end at t = 8, 10, ..., 26): a status line at
    # the first epoch end 5 s or more after the previous line
    assert [line.split(" · ")[3] for line in lines[:-1]] == ["epoch 1/10", "epoch 4/10", "epoch 7/10", "epoch 10/10"]
    assert lines[-1] == "seed 0: 2 grid point(s) trained on f0 in 26 s; point 0 chosen (validation 0.5000)"


def test_the_live_display_runs_and_leaves_the_phase_lines():
    stream = io.StringIO()
    with ProgressDisplay(stream=stream, live=True) as display:
        for event in _synthetic_stage():
            display(event)
        display(PhaseFinished(seed=0, phase="grid", folds=("f0",), heads=2, seconds=26.0, chosen=0, best=0.5))
    assert "seed 0: 2 grid point(s) trained on f0 in 26 s" in stream.getvalue()


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (0.4, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]


def test_eval_shows_probe_progress_and_quiet_silences_it(spoken_digit_task: Path, tmp_path: Path):
    args = eval_args("spoken_digit", spoken_digit_task.parent, tmp_path, "--grid", "faster", "--grid-points", "1")
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    lines = stderr.splitlines()
    assert lines[0].startswith("plan: mel on spoken_digit-1.0.9-small, device cpu (")
    assert any(line.startswith("seed 0: 1 grid point(s) trained on fold00 in ") for line in lines)
    assert any(line.startswith("seed 0: point 0 trained on the 4 other fold(s) in ") for line in lines)
    code, quiet_stdout, quiet_stderr = invoke(*args, "--quiet")
    assert code == 0 and quiet_stderr == "" and quiet_stdout == stdout  # the same result line, nothing else
    code, stdout, stderr = invoke("embed", "--model", "mel", "--task", "spoken_digit", "--tasks-dir",
                                  str(spoken_digit_task.parent), "--embeddings-dir", str(tmp_path / "e2"), "--quiet")
    assert code == 0 and stderr == "" and stdout.startswith("spoken_digit-1.0.9-small embeddings: ")
