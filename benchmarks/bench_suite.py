"""Suite-runner speed: one fixed small suite run by ``hear-atst run`` with 1 local worker, 2 local workers and Ray
with 2 workers, each from scratch (fresh embeddings and results), as a user runs it (a subprocess, start-up and
planning included), after one untimed run that warms the file cache.

The suite: the log-mel baseline on the real small spoken-digit and Speech Commands folders from ``../shared`` and on
miniatures of four HEAR 2021 task shapes (ESC-50, Gunshot Triangulation, LibriCount, Beijing Opera), the hear probe
at one grid point capped at 20 epochs, 2 seeds: 6 embedding and 6 probe jobs. Recorded per configuration: wall
time, the sum of the jobs' own times (``run.json``), speed-up over one worker, and Ray's overhead per job (its wall
time minus the local executor's at the same worker count, over the jobs run). On a 2-core machine the ideal speed-up
of 2 workers is below 2: both share the cores, and the jobs' lengths differ (the longest bounds the wall time).

    python benchmarks/bench_suite.py            # writes results/bench_suite.json and .md (run on a quiet machine)
    python benchmarks/bench_suite.py --quick    # one task, 3 epochs: a smoke test that writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evaluation.environment import cpu_model
from evaluation.results import write_json_atomic
from evaluation.suite.miniatures import write_miniature
from evaluation.suite.suites import load_suite
from hear_atst.atomic import write_text_atomic
from tasks.pipeline import prepare_task
from tasks.registry import get_spec

REPO = Path(__file__).resolve().parents[1]
MINIATURES = ("esc50", "gunshot_triangulation", "libricount", "beijing_opera")
CONFIGURATIONS = (("local", 1), ("local", 2), ("ray", 2))


def prepare(shared: Path, tasks_dir: Path, quick: bool) -> list[str]:
    """The suite's task folders under ``tasks_dir``; their names."""
    folders = [prepare_task(get_spec("spoken_digit"), tasks_dir, source=shared / "data" / "fsdd",
                            sample_rates=(16000,), mode="small").name]
    if quick:
        return folders
    keywords = shared / "data" / "speech_commands_small"
    folders.append(prepare_task(get_spec("speech_commands"), tasks_dir, source=keywords, sample_rates=(16000,),
                                mode="small").name)
    suite = load_suite("hear2021")
    folders += [write_miniature(suite.tasks[key], tasks_dir).name for key in MINIATURES]
    return folders


def run_once(executor: str, workers: int, tasks: list[str], tasks_dir: Path, work: Path, epochs: int
             ) -> dict[str, Any]:
    command = [str(Path(sys.executable).parent / "hear-atst"), "run", "--models", "mel", "--tasks", ",".join(tasks),
               "--tasks-dir", str(tasks_dir), "--embeddings-dir", str(work / "embeddings"), "--results-dir",
               str(work / "results"), "--run-dir", str(work / "run"), "--grid-points", "1", "--max-epochs",
               str(epochs), "--seeds", "2", "--executor", executor, "--workers", str(workers)]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - started
    if completed.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    summary = json.loads((work / "run" / "run.json").read_text())
    ran = [job for job in summary["jobs"] if job["status"] == "succeeded"]
    return {"executor": executor, "workers": workers, "wall_s": round(wall, 2), "jobs_run": len(ran),
            "job_seconds": round(sum(job["seconds"] for job in ran), 2)}


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# Suite runner: {document['suite']}", "", f"{document['machine']}", "",
             "| executor | workers | wall s | sum of job s | speed-up vs 1 worker | overhead per job s |",
             "|---|---|---|---|---|---|"]
    for row in document["runs"]:
        lines.append(f"| {row['executor']} | {row['workers']} | {row['wall_s']:.1f} | {row['job_seconds']:.1f} | "
                     f"{row['speedup']:.2f} | {row.get('ray_overhead_per_job_s', '–')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="The shared data folder.")
    parser.add_argument("--out", type=Path, default=REPO / "results", help="Where bench_suite.json/.md go.")
    parser.add_argument("--quick", action="store_true", help="One task, 3 epochs; prints, writes nothing.")
    args = parser.parse_args()
    epochs = 3 if args.quick else 20
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as scratch:
        root = Path(scratch)
        tasks = prepare(args.shared, root / "tasks", args.quick)
        run_once("local", 1, tasks, root / "tasks", root / "warm-up", epochs)  # untimed: file cache, imports
        runs = [run_once(executor, workers, tasks, root / "tasks", root / f"{executor}{workers}", epochs)
                for executor, workers in CONFIGURATIONS]
    single = runs[0]["wall_s"]
    local_by_workers = {row["workers"]: row["wall_s"] for row in runs if row["executor"] == "local"}
    for row in runs:
        row["speedup"] = round(single / row["wall_s"], 3)
        if row["executor"] == "ray":
            row["ray_overhead_per_job_s"] = round((row["wall_s"] - local_by_workers[row["workers"]]) / row["jobs_run"],
                                                  3)
    document = {"suite": f"mel on {len(tasks)} tasks ({', '.join(tasks)}), hear probe, 1 grid point, {epochs} "
                f"epochs, 2 seeds", "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, Python "
                f"{platform.python_version()}", "runs": runs}
    if args.quick:
        print(json.dumps(document, indent=1))
        print("(--quick: nothing written)")
        return
    write_json_atomic(args.out / "bench_suite.json", document)
    write_text_atomic(args.out / "bench_suite.md", markdown(document))
    print(markdown(document))


if __name__ == "__main__":
    main()
