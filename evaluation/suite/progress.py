"""The suite's one progress display: jobs done, running, failed and blocked, and which worker holds which job, with
a probe job's own progress line (:class:`evaluation.progress.ProgressState`, the state ``eval``'s display shows).

Workers tell the driver when a job starts on them and forward its probe events
(:class:`evaluation.suite.jobs.JobProgress`); the scheduler hands these words to :meth:`SuiteProgress.receive` and
calls :meth:`SuiteProgress.show` at every change and every half second. On a terminal: one rich live display (the
counts and a line per running job), with a line printed above it for each job that ends. Otherwise (logs, CI):
the counts and the running jobs' lines whenever a job starts or ends, and again every ``interval`` seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from evaluation.progress import ProgressState, format_duration
from evaluation.suite.jobs import BLOCKED, FAILED, SKIPPED, SUCCEEDED, JobProgress, Outcome


def counts_line(total: int, outcomes: dict[str, Outcome], running: int) -> str:
    """``[done/total done (N already complete), R running, F failed, B blocked]``."""
    count = {status: sum(o.status == status for o in outcomes.values())
             for status in (SUCCEEDED, SKIPPED, FAILED, BLOCKED)}
    done = count[SUCCEEDED] + count[SKIPPED]
    return (f"[{done}/{total} done ({count[SKIPPED]} already complete), {running} running, "
            f"{count[FAILED]} failed, {count[BLOCKED]} blocked]")


class SuiteProgress:
    """The run's display on ``stream`` (stderr by default); use as a context manager, or call :meth:`close`."""

    def __init__(self, total: int, stream: IO[str] | None = None, interval: float = 30.0, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.live_mode = self.stream.isatty() if live is None else live
        self.clock = clock
        self.numbers: dict[tuple[str, int], int] = {}  # (host, pid) -> worker number, in the order first heard of
        self.holder: dict[str, dict[str, Any]] = {}  # running job key -> its worker's identity
        self.probes: dict[str, ProgressState] = {}  # running probe job key -> its probe stage's state
        self.outcomes: dict[str, Outcome] = {}
        self.running: dict[str, float] = {}  # job key -> seconds so far
        self._lock = threading.Lock()  # the live display's refresh thread reads what receive and show change
        self._shown: tuple[Any, ...] | None = None
        self._shown_at = 0.0
        self._live: Any = None
        self._console: Any = None

    def receive(self, message: JobProgress) -> None:
        """A worker's word: the job started there (again, after a lost worker), or its probe moved on."""
        with self._lock:
            if not message.events:
                worker = message.worker
                self.numbers.setdefault((worker["host"], worker["pid"]), len(self.numbers) + 1)
                self.holder[message.key] = worker
                self.probes.pop(message.key, None)
                return
            state = self.probes.setdefault(message.key, ProgressState(self.clock))
            for event in message.events:
                state.update(event)

    def show(self, outcomes: dict[str, Outcome], running: dict[str, float]) -> None:
        """The finished jobs' outcomes and each running job's seconds so far."""
        text = None
        with self._lock:
            ended = [outcomes[key] for key in outcomes if key not in self.outcomes]
            self.outcomes, self.running = dict(outcomes), dict(running)
            for outcome in ended:
                self.holder.pop(outcome.key, None)
                self.probes.pop(outcome.key, None)
            now = self.clock()
            shown = (len(self.outcomes), tuple((key, self.worker_label(key)) for key in sorted(self.running)))
            if shown != self._shown or (self.running and now - self._shown_at >= self.interval):
                text = "\n".join(self.lines())
                self._shown, self._shown_at = shown, now
        if self.live_mode:  # printed outside the lock: the live display's refresh takes it
            self._show_live(ended)
        elif text is not None:
            print(text, file=self.stream, flush=True)

    def worker_label(self, key: str) -> str:
        """``worker N (host pid P, GPU G)`` of the worker holding job ``key``."""
        worker = self.holder.get(key)
        if worker is None:
            return "waiting for a worker"
        gpu = f", GPU {worker['cuda_visible_devices']}" if worker.get("cuda_visible_devices") else ""
        return f"worker {self.numbers[worker['host'], worker['pid']]} ({worker['host']} pid {worker['pid']}{gpu})"

    def lines(self) -> list[str]:
        """The counts, then one line per running job (by worker number): its worker, key, time so far and, for a
        probe, its probe stage's line."""
        def order(key: str) -> tuple[int, str]:
            worker = self.holder.get(key)
            return (self.numbers[worker["host"], worker["pid"]] if worker else len(self.numbers) + 1, key)

        lines = [counts_line(self.total, self.outcomes, len(self.running))]
        for key in sorted(self.running, key=order):
            line = f"  {self.worker_label(key)}: {key} · {format_duration(self.running[key])}"
            if key in self.probes:
                line += f" · {self.probes[key].line()}"
            lines.append(line)
        return lines

    def _show_live(self, ended: list[Outcome]) -> None:
        from rich.console import Console
        from rich.live import Live

        if self._live is None:
            self._console = Console(file=self.stream, force_terminal=True)  # live: asked for, or a terminal
            self._live = Live(self, console=self._console, refresh_per_second=2, transient=True)
            self._live.start()
        for outcome in ended:
            if outcome.status in (SUCCEEDED, FAILED):
                self._console.print(f"{outcome.status} {outcome.key} ({outcome.seconds:.1f} s)", highlight=False)

    def __rich__(self) -> Any:
        from rich.text import Text

        with self._lock:
            return Text("\n".join(self.lines()))

    def close(self) -> None:
        """Stop the live display, leaving the final counts."""
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._console.print(counts_line(self.total, self.outcomes, len(self.running)), highlight=False)

    def __enter__(self) -> SuiteProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
