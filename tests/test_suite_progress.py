"""The suite's progress display: which worker holds which job, a probe job's own progress line built from the
events its worker forwards, the plain lines off a terminal, and real local workers forwarding real events."""

from __future__ import annotations

import io
from pathlib import Path

from suite_helpers import DIGITS

from evaluation.progress import (
    BankStarted,
    EpochFinished,
    PhaseFinished,
    PhaseStarted,
    ProbeFinished,
    ProbePlan,
    ProgressState,
    StepFinished,
)
from evaluation.protocol import ProbeConfig
from evaluation.suite.executors import LocalExecutor
from evaluation.suite.jobs import FAILED, SUCCEEDED, Forwarder, JobProgress, Outcome
from evaluation.suite.plan import ModelRequest, Settings, build_plan
from evaluation.suite.progress import SuiteProgress
from evaluation.suite.scheduler import run_plan

HOST_A = {"host": "node-a", "pid": 4242, "cuda_visible_devices": None}
HOST_B = {"host": "node-b", "pid": 77, "cuda_visible_devices": "1"}
PROBE_KEY = "probe/mel/esc50/hear"
PROBE_EVENTS = (
    ProbePlan(task="esc50", protocol="hear", seeds=(0, 1), folds=("fold00", "fold01"), grid_points=2,
              grid_head_epochs=20, retrain_head_epochs=10),
    PhaseStarted(seed=0, phase="grid", folds=("fold00",), heads=2, head_epochs=20),
    BankStarted(heads=2, max_epochs=10, maximize=True),
    EpochFinished(epoch=1, max_epochs=10, trained=2, training=2, stopped=0, best=0.5),
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_show_each_worker_its_job_and_the_probe_line() -> None:
    clock, stream = Clock(), io.StringIO()
    display = SuiteProgress(5, stream=stream, interval=30, live=False, clock=clock)
    display.receive(JobProgress("embed/mel/speech", HOST_B))  # a worker heard of first is worker 1
    display.receive(JobProgress(PROBE_KEY, HOST_A))
    display.receive(JobProgress(PROBE_KEY, HOST_A, PROBE_EVENTS[:2]))
    clock.now = 4.0
    display.receive(JobProgress(PROBE_KEY, HOST_A, PROBE_EVENTS[2:]))  # 2 head-epochs in 4 s, 58 left
    done = {"prepare/esc50/16000": Outcome("prepare/esc50/16000", "skipped"),
            "embed/mel/esc50": Outcome("embed/mel/esc50", SUCCEEDED)}
    display.show(done, {PROBE_KEY: 65.0, "embed/mel/speech": 3.0, "embed/mel/other": 0.2})
    assert stream.getvalue().splitlines() == [
        "[2/5 done (1 already complete), 3 running, 0 failed, 0 blocked]",
        "  worker 1 (node-b pid 77, GPU 1): embed/mel/speech · 3s",
        "  worker 2 (node-a pid 4242): probe/mel/esc50/hear · 1m05s · probe esc50 · seed 0 (1/2) · grid on fold00 · "
        "epoch 1/10 · heads 2 training, 0 stopped early (of 2) · best 0.5000 · 4s elapsed · left <= 1m56s",
        "  waiting for a worker: embed/mel/other · 0s",
    ]
    display.show(done, {PROBE_KEY: 66.0, "embed/mel/speech": 4.0, "embed/mel/other": 1.2})
    assert len(stream.getvalue().splitlines()) == 4  # nothing changed: no new lines before the interval
    clock.now = 34.0
    display.show(done, {PROBE_KEY: 95.0, "embed/mel/speech": 33.0, "embed/mel/other": 30.2})
    assert len(stream.getvalue().splitlines()) == 8  # the interval passed: the lines again
    done["embed/mel/speech"] = Outcome("embed/mel/speech", FAILED)
    display.show(done, {PROBE_KEY: 95.5, "embed/mel/other": 30.7})  # a job ended: shown at once
    assert stream.getvalue().splitlines()[-3:] == [
        "[2/5 done (1 already complete), 2 running, 1 failed, 0 blocked]",
        stream.getvalue().splitlines()[2].replace("1m05s", "1m36s").replace("4s elapsed", "34s elapsed")
        .replace("left <= 1m56s", "left <= 16m26s"),
        "  waiting for a worker: embed/mel/other · 31s",
    ]


def test_the_live_display_runs_and_leaves_each_ended_job_and_the_counts() -> None:
    stream = io.StringIO()
    with SuiteProgress(2, stream=stream, live=True) as display:
        display.receive(JobProgress(PROBE_KEY, HOST_A))
        display.receive(JobProgress(PROBE_KEY, HOST_A, PROBE_EVENTS))
        display.show({}, {PROBE_KEY: 1.0, "embed/mel/x": 1.0})
        assert "worker 1 (node-a pid 4242): probe/mel/esc50/hear · 1s · probe esc50 · " in display.lines()[1]
        display.show({PROBE_KEY: Outcome(PROBE_KEY, SUCCEEDED, seconds=2.5)}, {"embed/mel/x": 1.5})
    output = stream.getvalue()
    assert "succeeded probe/mel/esc50/hear (2.5 s)" in output
    assert output.rstrip().endswith("[1/2 done (0 already complete), 1 running, 0 failed, 0 blocked]")


def test_a_worker_forwards_batches_and_logs_phase_lines() -> None:
    clock, sent, logged = Clock(), [], []
    forward = Forwarder("probe/x", HOST_A, sent.append, logged.append, interval=0.5, clock=clock)
    for event in (*PROBE_EVENTS, StepFinished(step=1, steps=3, heads=2), StepFinished(step=2, steps=3, heads=2)):
        forward(event)
    assert sent == []  # under the interval: kept
    clock.now = 0.6
    phase = PhaseFinished(seed=0, phase="grid", folds=("fold00",), heads=2, seconds=0.6, chosen=1, best=0.75)
    forward(phase)  # the interval passed: sent, the batches but the latest dropped
    assert sent == [JobProgress("probe/x", HOST_A, (*PROBE_EVENTS, StepFinished(step=2, steps=3, heads=2), phase))]
    assert logged == ["seed 0: 2 grid point(s) trained on fold00 in 1 s; point 1 chosen (validation 0.7500)"]
    forward(ProbeFinished(seconds=0.7))  # the end: sent at once
    assert sent[1] == JobProgress("probe/x", HOST_A, (ProbeFinished(seconds=0.7),))


def test_local_workers_forward_their_jobs_and_probe_events(tasks_dir: Path, tmp_path: Path) -> None:
    settings = Settings(tasks_dir, tmp_path / "e", tmp_path / "r")
    plan = build_plan([ModelRequest("mel")], [DIGITS], [ProbeConfig(protocol="linear", max_epochs=3)], settings)
    heard: list[JobProgress] = []

    class Recorder(SuiteProgress):
        def receive(self, message: JobProgress) -> None:
            heard.append(message)
            super().receive(message)

    stream = io.StringIO()
    executor = LocalExecutor(2, tmp_path / "logs")
    try:
        outcomes = run_plan(plan, executor, tmp_path / "run", Recorder(len(plan.jobs), stream=stream, live=False))
    finally:
        executor.close()
    ran = [outcome for outcome in outcomes.values() if outcome.status == SUCCEEDED]
    assert [outcome.key for outcome in ran] == [f"embed/mel/{DIGITS}", f"probe/mel/{DIGITS}/linear-max-epochs=3"]
    for outcome in ran:  # each job's first word says it started; every word names the worker that ran it
        words = [m for m in heard if m.key == outcome.key]
        assert words[0].events == () and all(m.worker == outcome.worker for m in words)
    probe = ran[1]
    events = [event for m in heard if m.key == probe.key for event in m.events]
    assert isinstance(events[0], ProbePlan) and isinstance(events[-1], ProbeFinished)
    state = ProgressState()
    for event in events:
        state.update(event)
    assert state.plan.task == "spoken_digit" and state.done == state.bound > 0  # every head-epoch arrived
    assert "seed 0: " in Path(probe.log).read_text()  # the phase lines are in the job's log

    replay = io.StringIO()  # the forwarded words, shown while the probe runs
    display = SuiteProgress(len(plan.jobs), stream=replay, live=False)
    for message in heard:
        if message.key == probe.key:
            display.receive(message)
    display.show({}, {probe.key: 2.0})
    label = f"worker 1 ({probe.worker['host']} pid {probe.worker['pid']})"
    assert replay.getvalue().splitlines()[1].startswith(f"  {label}: {probe.key} · 2s · probe spoken_digit · ")
    assert "[3/3 done (1 already complete), 0 running, 0 failed, 0 blocked]" in stream.getvalue()
