"""Progress of the probe stage: plain event objects from the training loop, a state that turns them into an
honest estimate of the time left, and a display on stderr.

Any probe emits the events below through one callable (``progress(event)``): :func:`evaluation.protocol.evaluate`
emits the plan, the phases and the end; the training loop (:func:`evaluation.probes.train.train_heads`) emits a
:class:`BankStarted` a bank, a :class:`StepFinished` a batch and an :class:`EpochFinished` an epoch. Events are
small frozen dataclasses (picklable, so a worker process can forward them). :class:`ProgressState` folds them into
what a person wants to see (seed, fold, phase, epoch, heads training and stopped, best validation score, elapsed,
time left) and :class:`ProgressDisplay` shows that state: one live rich display on a terminal, or, when the stream
is not a terminal (logs, CI), the phases' end lines plus one status line every ``interval`` seconds. A suite
runner keeps one state per job and calls :meth:`ProgressState.line` for its own view.

Time left: the work is counted in head-epochs (one head trained for one epoch, its validation included). The
plan gives the most head-epochs the stage can take (every head to its ``max_epochs``); a head that stops early
removes the epochs it will not train. The time left is the rate measured so far (seconds per head-epoch) times
the head-epochs left at most (the epoch under way counted by its finished batches); once a phase has finished,
the share of its bound it actually used scales the rest (``~`` in the line), and the bound stays shown as ``<=``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

Phase = str  # "grid": the grid points on the first fold; "retrain": the chosen point on the other folds


@dataclass(frozen=True)
class ProbePlan:
    """The probe stage's work, before it starts: per seed, the grid phase then the retraining phase."""

    task: str
    protocol: str
    seeds: tuple[int, ...]
    folds: tuple[str, ...]
    grid_points: int
    grid_head_epochs: int  # per seed: every grid point to its max_epochs
    retrain_head_epochs: int  # per seed, at most: the longest grid point on every other fold


@dataclass(frozen=True)
class PhaseStarted:
    seed: int
    phase: Phase
    folds: tuple[str, ...]
    heads: int
    head_epochs: int  # at most, this phase


@dataclass(frozen=True)
class BankStarted:
    """A bank of heads trained together (one schedule and architecture) begins."""

    heads: int
    max_epochs: int
    maximize: bool


@dataclass(frozen=True)
class EpochFinished:
    """One epoch of a bank, its validation (when due) and early stops included."""

    epoch: int  # epochs done in this bank, from 1
    max_epochs: int
    trained: int  # heads that trained this epoch
    training: int  # heads still training after it
    stopped: int  # heads of this bank stopped early so far
    best: float | None  # the best validation value of this bank so far (None before the first finite one)


@dataclass(frozen=True)
class StepFinished:
    """One training batch of a bank (an epoch of a wide problem can take minutes)."""

    step: int  # batches done in this epoch, from 1
    steps: int  # batches in the epoch
    heads: int  # heads training


@dataclass(frozen=True)
class PhaseFinished:
    seed: int
    phase: Phase
    folds: tuple[str, ...]
    heads: int
    seconds: float
    chosen: int  # the grid point chosen (retrain: the one retrained)
    best: float | None = None  # grid phase: the chosen point's validation value


@dataclass(frozen=True)
class ProbeFinished:
    seconds: float


ProgressEvent = ProbePlan | PhaseStarted | BankStarted | StepFinished | EpochFinished | PhaseFinished | ProbeFinished
ProgressCallback = Callable[[ProgressEvent], None]


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def phase_line(event: PhaseFinished) -> str:
    """The line a finished phase leaves in the log."""
    if event.phase == "grid":
        return (f"seed {event.seed}: {event.heads} grid point(s) trained on {'|'.join(event.folds)} in "
                f"{event.seconds:.0f} s; point {event.chosen} chosen (validation {event.best:.4f})")
    return (f"seed {event.seed}: point {event.chosen} trained on the {len(event.folds)} other fold(s) in "
            f"{event.seconds:.0f} s")


class ProgressState:
    """What the events so far say: where the stage is and how long it should still take."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.started: float | None = None
        self.plan: ProbePlan | None = None
        self.bound = 0  # head-epochs the stage takes at most, as now known
        self.done = 0  # head-epochs trained
        self.seed: int | None = None
        self.phase: PhaseStarted | None = None
        self.phase_done = 0
        self.phase_stopped = 0  # heads stopped early in this phase
        self.bank: BankStarted | None = None
        self.stopped_before = 0  # heads stopped early in this phase's earlier banks
        self.epoch: EpochFinished | None = None
        self.step: StepFinished | None = None  # the epoch under way, when a batch of it has finished
        self.best: float | None = None
        self.maximize = True
        self.finished_used = 0  # head-epochs trained in finished phases
        self.finished_bound = 0  # ... and their bound
        self.finished: float | None = None

    # ---------------------------------------------------------------- events

    def update(self, event: ProgressEvent) -> None:
        if self.started is None:
            self.started = self.clock()
        if isinstance(event, StepFinished):
            self.step = event
        elif isinstance(event, ProbePlan):
            self.plan = event
            self.bound = len(event.seeds) * (event.grid_head_epochs + event.retrain_head_epochs)
        elif isinstance(event, PhaseStarted):
            self._start_phase(event)
        elif isinstance(event, BankStarted):
            self.bank, self.epoch, self.step, self.maximize = event, None, None, event.maximize
            self.stopped_before = self.phase_stopped
        elif isinstance(event, EpochFinished):
            self._epoch(event)
            self.step = None
        elif isinstance(event, PhaseFinished):
            self.finished_used += self.phase_done
            self.finished_bound += self.phase.head_epochs if self.phase else self.phase_done
            self.phase, self.bank, self.epoch = None, None, None
        elif isinstance(event, ProbeFinished):
            self.finished = event.seconds

    def _start_phase(self, event: PhaseStarted) -> None:
        assumed = 0
        if self.plan is not None:
            assumed = self.plan.grid_head_epochs if event.phase == "grid" else self.plan.retrain_head_epochs
        self.bound += event.head_epochs - assumed  # the plan assumed the longest point for the retraining
        self.seed, self.phase = event.seed, event
        self.phase_done, self.phase_stopped, self.stopped_before, self.best = 0, 0, 0, None

    def _epoch(self, event: EpochFinished) -> None:
        newly_stopped = event.trained - event.training
        self.done += event.trained
        self.phase_done += event.trained
        self.bound -= newly_stopped * (event.max_epochs - event.epoch)  # epochs those heads will not train
        self.phase_stopped = self.stopped_before + event.stopped
        self.epoch = event
        if event.best is not None and (self.best is None or (event.best > self.best) == self.maximize):
            self.best = event.best

    # ---------------------------------------------------------------- derived figures

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def seconds_left(self) -> tuple[float | None, float | None]:
        """(expected, at most) seconds left; None until one head-epoch has been timed. Expected scales the bound
        by the share of their bound the finished phases used (the bound itself before any phase finished)."""
        done = self.done + (self.step.heads * self.step.step / self.step.steps if self.step else 0.0)
        if done == 0:
            return None, None
        rate = self.elapsed / done
        left = max(0.0, self.bound - done) * rate
        share = self.finished_used / self.finished_bound if self.finished_bound else 1.0
        return left * share, left

    def line(self) -> str:
        """One line: task, seed, phase and folds, epoch, heads, best validation, elapsed, time left."""
        parts = [f"probe {self.plan.task}" if self.plan else "probe"]
        if self.plan and self.seed is not None:
            parts.append(f"seed {self.seed} ({self.plan.seeds.index(self.seed) + 1}/{len(self.plan.seeds)})")
        if self.phase is not None:
            what = "grid" if self.phase.phase == "grid" else "retrain chosen point"
            parts.append(f"{what} on {'|'.join(self.phase.folds)}")
        if self.bank is not None and (self.epoch or self.step):
            epochs_done = self.epoch.epoch if self.epoch else 0
            batch = f" (batch {self.step.step}/{self.step.steps})" if self.step else ""
            parts.append(f"epoch {epochs_done + bool(self.step)}/{self.bank.max_epochs}{batch}")
            training = self.step.heads if self.step else self.epoch.training if self.epoch else self.bank.heads
            heads = self.phase.heads if self.phase else self.bank.heads
            parts.append(f"heads {training} training, {self.phase_stopped} stopped early (of {heads})")
        if self.best is not None:
            parts.append(f"best {self.best:.4f}")
        parts.append(f"{format_duration(self.elapsed)} elapsed")
        expected, at_most = self.seconds_left()
        if self.finished is not None:
            parts.append("done")
        elif at_most is not None and expected is not None:
            parts.append(f"left ~{format_duration(expected)} (<= {format_duration(at_most)})"
                         if self.finished_bound else f"left <= {format_duration(at_most)}")
        return " · ".join(parts)


class ProgressDisplay:
    """A :data:`ProgressCallback` that shows a :class:`ProgressState` on ``stream`` (stderr by default).

    On a terminal: one rich live display (the status line and a bar of head-epochs, redrawn twice a second by rich's
    refresh thread from the state, so an event costs only the state's update), with each finished phase's line
    printed above it. Otherwise: each finished phase's line, and the status line at most every ``interval`` seconds
    (at the end of a batch or epoch). Use as a context manager, or call :meth:`close` at the end.
    """

    def __init__(self, stream: IO[str] | None = None, interval: float = 30.0, live: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.state = ProgressState(clock)
        self.clock = clock
        self.live_mode = self.stream.isatty() if live is None else live
        self._live: Any = None
        self._console: Any = None
        self._last_line: float | None = None

    def __call__(self, event: ProgressEvent) -> None:
        self.state.update(event)
        if self.live_mode:
            self._show_live(event)
        else:
            self._show_plain(event)
        if isinstance(event, ProbeFinished):
            self.close()

    def _show_plain(self, event: ProgressEvent) -> None:
        now = self.clock()
        if isinstance(event, PhaseFinished):
            print(phase_line(event), file=self.stream, flush=True)
        if self._last_line is None:
            self._last_line = now
        elif isinstance(event, StepFinished | EpochFinished) and now - self._last_line >= self.interval:
            print(self.state.line(), file=self.stream, flush=True)
            self._last_line = now

    def _show_live(self, event: ProgressEvent) -> None:
        from rich.console import Console
        from rich.live import Live

        if self._live is None:
            self._console = Console(file=self.stream, force_terminal=True)  # live: asked for, or a terminal
            self._live = Live(self, console=self._console, refresh_per_second=2, transient=True)
            self._live.start()
        if isinstance(event, PhaseFinished):
            self._console.print(phase_line(event), highlight=False)

    def __rich__(self) -> Any:
        """What the live display draws: the status line over a bar of head-epochs."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid()
        grid.add_row(Text(self.state.line()))
        grid.add_row(ProgressBar(total=max(self.state.bound, 1), completed=self.state.done, width=60))
        return grid

    def close(self) -> None:
        """Stop the live display (the finished phases' lines stay on the terminal)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
