"""How good is the time estimate of ``hear-atst eval`` (``--dry-run``), and what does the progress display cost?

For every (model, task) pair of the regression suite (``results/regression.json``: small real tasks prepared from
``../shared``, the suite's probe settings and seeds) and for one event task under the default HEAR grid (``mel``,
8 grid points, one seed, no PSDS: on the suite's DCASE 2016 scenes, 72 x 30 s, or with ``--event-task
demo_events`` on the synthetic event demo, 40 x 4 s, a thirteenth of the rows), it

1. estimates the run (:func:`evaluation.estimate.estimate_run`: the calibration itself is timed), then
2. runs it (:func:`evaluation.runner.run_eval`, fresh embeddings) and records estimate / actual per stage
   (embedding, with the estimate's model and file shares; probes, the expected figure and its bound).

Then the cost of the progress display: the probe stage of one pair (the DCASE pair of the suite) is run on the
same embeddings without a display, with the plain display (lines to ``/dev/null``) and with the live rich display
(rendered to ``/dev/null``), twice each in alternating order (min kept), and the time spent inside the display's
callback is summed. Target: estimate within a factor of 1.5 per stage; display cost under 1 % of the probe stage.

Run it alone on a quiet machine (other processes slow the calibration and the run unequally). It takes about
as long as ``hear-atst regress`` (the suite's pairs), plus the default-grid event task, plus six probe stages of
the DCASE pair for the display's cost. On DCASE the 8-point grid alone ran over 20 minutes on the 2-core CPU (its
estimate: hours). On ``demo_events`` an epoch of the grid took 4.4 s of CPU time (measured on the loaded
machine), about 2 s of a quiet one's two cores, and a head trains 63 to 500 epochs: about 3 to 18 minutes, or
``--event-only`` to run it alone into its own ``--out``:

    python benchmarks/bench_estimate.py [--shared ../shared] [--out results/bench_estimate]
                                        [--skip-event | --event-task demo_events]
    python benchmarks/bench_estimate.py --event-only [--event-task demo_events] --out results/bench_estimate_event
    python benchmarks/bench_estimate.py --quick      # one small pair, one seed, 3 epochs: prints, writes nothing
    python benchmarks/bench_estimate.py --quick --event-task demo_events   # ... plus the event task, 10 epochs
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from evaluation.embeddings import load_task_embeddings, task_embeddings_dir  # noqa: E402
from evaluation.environment import cpu_model  # noqa: E402
from evaluation.estimate import estimate_run  # noqa: E402
from evaluation.leaderboard.baseline import load_regression  # noqa: E402
from evaluation.progress import ProgressDisplay, ProgressEvent  # noqa: E402
from evaluation.protocol import ProbeConfig, evaluate  # noqa: E402
from evaluation.runner import resolve_model, run_eval  # noqa: E402
from evaluation.suite.shared_tasks import prepare_tasks, resolve_shared  # noqa: E402
from evaluation.suite.suites import pair_key  # noqa: E402
from evaluation.taskfolder import TaskFolder  # noqa: E402
from hear_atst.atomic import write_text_atomic  # noqa: E402
from tasks.pipeline import prepare_task  # noqa: E402
from tasks.registry import get_spec  # noqa: E402

TARGET_RATIO = 1.5
TARGET_OVERHEAD = 0.01
QUICK_EVENT_EPOCHS = 10  # --quick: the event task's grid capped here (DCASE validates every 10 epochs)
EVENT_MODEL = "mel"  # run under the default HEAR grid on one event task as well
EVENT_TASKS = ("dcase2016", "demo_events")  # the suite's DCASE scenes, or the synthetic event demo (built here)


def measure_pair(name: str, setup: Any, folder: TaskFolder, probe: ProbeConfig, work: Path) -> dict[str, Any]:
    """Estimate, then run; the figures of both per stage."""
    started = time.perf_counter()
    estimate = estimate_run(setup, folder, work / "embeddings", probe)
    calibration = time.perf_counter() - started
    outcome = run_eval(setup, folder, embeddings_dir=work / "embeddings", results_dir=work / "results", probe=probe,
                       progress=False)
    actual = outcome.results["timing_s"]
    expected, at_most = estimate.probe.seconds()
    embed = estimate.embed
    row = {
        "case": name, "model": setup.model_id, "task": folder.name, "probe": probe.run_name, "seeds": len(probe.seeds),
        "clips": estimate.embed.clips, "audio_seconds": round(estimate.embed.audio_seconds, 1),
        "rows": sum(estimate.probe.rows.values()), "dims": estimate.probe.dims,
        "calibration_s": round(calibration, 2),
        "embed_estimate_s": round(embed.seconds(), 2), "embed_actual_s": round(actual["embed"], 2),
        "embed_model_estimate_s": round(embed.load_seconds + embed.audio_seconds / embed.audio_per_second, 2)
        if embed.audio_per_second else 0.0,
        "embed_files_estimate_s": round(embed.file_seconds(), 2) if not embed.cached else 0.0,
        "probe_estimate_s": round(expected, 2), "probe_least_s": round(estimate.probe.least_seconds(), 2),
        "probe_bound_s": round(at_most, 2),
        "probe_actual_s": round(actual["probe"], 2),
        "lines": estimate.lines(),
    }
    row["embed_ratio"] = round(row["embed_estimate_s"] / row["embed_actual_s"], 3)
    row["probe_ratio"] = round(row["probe_estimate_s"] / row["probe_actual_s"], 3)
    row["probe_within_bounds"] = row["probe_least_s"] <= row["probe_actual_s"] <= row["probe_bound_s"]
    print(json.dumps({k: v for k, v in row.items() if k != "lines"}), flush=True)
    return row


class TimedCallback:
    """A progress callback that sums the time spent inside another one."""

    def __init__(self, inner: Callable[[ProgressEvent], None]) -> None:
        self.inner, self.seconds, self.events = inner, 0.0, 0

    def __call__(self, event: ProgressEvent) -> None:
        start = time.perf_counter()
        self.inner(event)
        self.seconds += time.perf_counter() - start
        self.events += 1


def measure_overhead(embeddings: Path, probe: ProbeConfig, repeats: int) -> dict[str, Any]:
    """The probe stage without a display, with the plain one and with the live one (min over ``repeats``)."""
    task = load_task_embeddings(embeddings)
    times: dict[str, list[float]] = {"none": [], "plain": [], "live": []}
    inside: dict[str, float] = {}
    events = 0
    with open(os.devnull, "w") as null:
        for _ in range(repeats):
            for mode in times:
                callback = None
                display = None
                if mode != "none":
                    display = ProgressDisplay(stream=null, live=mode == "live")
                    callback = TimedCallback(display)
                start = time.perf_counter()
                evaluate(task, probe, progress=callback)
                times[mode].append(time.perf_counter() - start)
                if display is not None and callback is not None:
                    display.close()
                    inside[mode] = min(inside.get(mode, float("inf")), callback.seconds)
                    events = callback.events
    best = {mode: min(values) for mode, values in times.items()}
    out = {"probe": probe.run_name, "seeds": len(probe.seeds), "repeats": repeats, "events": events,
           "seconds": {mode: [round(v, 3) for v in values] for mode, values in times.items()}}
    for mode in ("plain", "live"):
        out[f"{mode}_wall_overhead"] = round(best[mode] / best["none"] - 1, 4)
        out[f"{mode}_callback_share"] = round(inside[mode] / best[mode], 5)
    print(json.dumps(out), flush=True)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The time estimate against the real run (`benchmarks/bench_estimate.py`)", "",
        f"{report['machine']}; {report['date']}. Estimate / actual per stage (target: within x{TARGET_RATIO}).", "",
        "| case | model | task | probe | seeds | clips | rows x dims | calibration s | embed est (model + files) / "
        "actual s | ratio | probe est (least to most) / actual s | ratio |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["pairs"]:
        lines.append(f"| {r['case']} | {r['model']} | {r['task']} | {r['probe']} | {r['seeds']} | {r['clips']} | "
                     f"{r['rows']} x {r['dims']} | {r['calibration_s']} | {r['embed_estimate_s']} "
                     f"({r['embed_model_estimate_s']} + {r['embed_files_estimate_s']}) / {r['embed_actual_s']} | "
                     f"{r['embed_ratio']} | {r['probe_estimate_s']} ({r['probe_least_s']} to {r['probe_bound_s']}) / "
                     f"{r['probe_actual_s']} | {r['probe_ratio']} |")
    within = [r for r in report["pairs"] if all(1 / TARGET_RATIO <= r[k] <= TARGET_RATIO
                                                  for k in ("embed_ratio", "probe_ratio"))]
    bounded = sum(r["probe_within_bounds"] for r in report["pairs"])
    lines += ["", f"Within x{TARGET_RATIO} on both stages: {len(within)} of {len(report['pairs'])}. The probe stage "
              f"within the estimate's bounds (every head stopping at its earliest, none stopping early): {bounded} of "
              f"{len(report['pairs'])}."]
    overhead = report.get("overhead")
    if overhead:
        lines += ["", f"Progress display on {overhead['probe']} ({overhead['events']} events; probe-stage seconds "
                  f"without / plain / live: {overhead['seconds']}): wall-time overhead plain "
                  f"{100 * overhead['plain_wall_overhead']:.2f} %, live {100 * overhead['live_wall_overhead']:.2f} %; "
                  f"time inside the callback plain {100 * overhead['plain_callback_share']:.3f} %, live "
                  f"{100 * overhead['live_callback_share']:.3f} % of the stage "
                  f"(target < {100 * TARGET_OVERHEAD:.0f} %)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=None, help="../shared (else $HEAR_ATST_SHARED)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench_estimate")
    parser.add_argument("--skip-event", action="store_true", help="leave out the default-grid event task")
    parser.add_argument("--event-task", choices=EVENT_TASKS, default=None,
                        help="the default-grid event task (dcase2016 unless --quick; --quick runs it only if named)")
    parser.add_argument("--event-only", action="store_true",
                        help="only the default-grid event task: no suite pairs, no display cost (another --out)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each display mode (overhead)")
    parser.add_argument("--quick", action="store_true", help="one small pair, 1 seed, 3 epochs (an --event-task: "
                        f"{QUICK_EVENT_EPOCHS}); writes nothing")
    args = parser.parse_args()
    if args.skip_event and (args.event_task or args.event_only):
        parser.error("--skip-event excludes --event-task and --event-only")
    if args.event_only and not args.quick and args.out == parser.get_default("out"):
        parser.error("--event-only needs its own --out (the default holds the suite pairs' figures)")
    event_task = (None if args.skip_event or (args.quick and not (args.event_task or args.event_only))
                  else args.event_task or "dcase2016")

    regression = REPO / "results" / "regression.json"
    suite, _, _ = load_regression(regression)
    shared = resolve_shared(suite, regression, args.shared)
    pairs = [] if args.event_only else [("mel", "keywords")] if args.quick else list(suite.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        needed = {task for _, task in pairs} | ({event_task} & set(suite.tasks))
        suite_tasks = {name: task for name, task in suite.tasks.items() if name in needed}
        folders = prepare_tasks(dataclasses.replace(suite, tasks=suite_tasks), shared, work,
                                log=lambda line: print(line, file=sys.stderr))
        rows = []
        for model, task in pairs:
            key = pair_key(model, task)
            spec = suite.models[model]
            setup = resolve_model(spec.model, shared / spec.weights if spec.weights else None, dict(spec.options or {}))
            probe = suite.probe_for(key)
            if args.quick:
                probe = ProbeConfig(**{**suite.probe, "max_epochs": 3}, seeds=[0])
            rows.append(measure_pair(key, setup, folders[task], probe, work / key))
        if event_task == "demo_events":  # synthetic: built here in seconds
            folders[event_task] = TaskFolder.load(prepare_task(get_spec(event_task), work / "synthetic"))
        if event_task:
            grid = ProbeConfig(seeds=[0], psds=False, **({"max_epochs": QUICK_EVENT_EPOCHS} if args.quick else {}))
            rows.append(measure_pair(f"{EVENT_MODEL}/{event_task} (default HEAR grid)", resolve_model(EVENT_MODEL),
                                     folders[event_task], grid, work / "event"))
        overhead = None
        if pairs:
            over_key = pair_key("mel", "keywords" if args.quick else "dcase2016")
            over_setup = resolve_model("mel")
            over_folder = folders["keywords" if args.quick else "dcase2016"]
            over_probe = (ProbeConfig(**{**suite.probe, "max_epochs": 3}, seeds=[0]) if args.quick
                          else suite.probe_for(over_key))
            overhead = measure_overhead(task_embeddings_dir(work / over_key / "embeddings", over_setup, over_folder),
                                        over_probe, 1 if args.quick else args.repeats)
    report = {
        "benchmark": "bench_estimate",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs",
        "target_ratio": TARGET_RATIO, "target_overhead": TARGET_OVERHEAD,
        "pairs": rows, "overhead": overhead,
    }
    if args.quick:
        print(markdown(report))
        print("--quick: nothing written")
        return
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), markdown(report))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
