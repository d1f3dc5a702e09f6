"""Suite-runner speed: one fixed suite run by ``hear-atst run`` with 1 local worker, 2 local workers and Ray with 2
workers, each from scratch (fresh embeddings and results), as a user runs it (a subprocess, start-up and planning
included), after one untimed warm-up run (file cache, imports).

Two suites (``--size``):

- ``small`` (default, about a minute in all): the log-mel baseline on the real small spoken-digit and Speech
  Commands folders from ``../shared`` and on miniatures of four HEAR 2021 task shapes (ESC-50, Gunshot
  Triangulation, LibriCount, Beijing Opera), the hear probe at one grid point capped at 20 epochs, 2 seeds: 6
  embedding and 6 probe jobs of about a second each, so fixed costs (start-up, planning, Ray's) dominate. Warmed up
  with the whole suite.
- ``medium`` (a few minutes per configuration): the log-mel baseline, CREPE and ATST-Frame on the reduced fixture
  checkpoint (``../shared/fixtures``) on three real small tasks from ``../shared`` (spoken digits, Speech Commands,
  ten LibriSpeech speakers in the VoxCeleb1 layout), the hear probe at 2 grid points capped at 50 epochs, 2 seeds:
  9 embedding and 9 probe jobs of seconds to a minute (CREPE's embeddings the longest), so the jobs' own work
  dominates and the 2-worker speed-up and Ray's overhead per job mean something. Warmed up with mel on the first
  task.

Recorded per configuration: wall time, the sum of the jobs' own times (``run.json``), speed-up over one worker, and
Ray's overhead per job (its wall time minus the local executor's at the same worker count, over the jobs run). On a
2-core machine the ideal speed-up of 2 workers is below 2: both share the cores (one torch thread each instead of
two), and the jobs' lengths differ (the longest bounds the wall time).

    python benchmarks/bench_suite.py                  # writes results/bench_suite.json and .md (a quiet machine)
    python benchmarks/bench_suite.py --size medium    # writes results/bench_suite_medium.json and .md
    python benchmarks/bench_suite.py [--size medium] --quick   # the suite's models on its first task, 1 grid point,
                                                      # 3 epochs, 1 seed: a smoke test that writes nothing
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
from dataclasses import dataclass
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
CONFIGURATIONS = (("local", 1), ("local", 2), ("ray", 2))
QUICK_PROBE = ("--grid-points", "1", "--max-epochs", "3", "--seeds", "1")
ATST_FIXTURE = "fixtures/atst_frame_lightning.ckpt"  # under ../shared: ATST-Frame, reduced


@dataclass(frozen=True)
class SuiteSize:
    tasks: tuple[str, ...]  # keys of prepare_one
    models: tuple[str, ...]
    probe: tuple[str, ...]  # hear-atst run's probe flags
    about: str
    full_warm_up: bool  # warm up with the whole suite (else mel on its first task)


SIZES = {
    "small": SuiteSize(("spoken_digit", "speech_commands", "esc50", "gunshot_triangulation", "libricount",
                        "beijing_opera"), ("mel",), ("--grid-points", "1", "--max-epochs", "20", "--seeds", "2"),
                       "hear probe, 1 grid point, 20 epochs, 2 seeds", True),
    "medium": SuiteSize(("spoken_digit", "speech_commands", "voxceleb1"), ("mel", "crepe", "atst_frame"),
                        ("--grid-points", "2", "--max-epochs", "50", "--seeds", "2"),
                        "hear probe, 2 grid points, at most 50 epochs, 2 seeds", False),
}


def prepare_one(task: str, shared: Path, tasks_dir: Path, scratch: Path) -> str:
    """Task ``task``'s folder under ``tasks_dir`` at 16 kHz (a real small task from ``shared``, or a miniature of
    a HEAR 2021 task's shape); its name."""
    real = {"spoken_digit": shared / "data" / "fsdd", "speech_commands": shared / "data" / "speech_commands_small"}
    if task == "voxceleb1":  # ten LibriSpeech speakers laid out as VoxCeleb1 by the shared tool
        real[task] = scratch / "voxceleb1-layout"
        subprocess.run([sys.executable, str(shared / "tools" / "make_voxceleb1_layout.py"), str(real[task])],
                       check=True, capture_output=True)
    if task in real:
        return prepare_task(get_spec(task), tasks_dir, source=real[task], sample_rates=(16000,), mode="small").name
    return write_miniature(load_suite("hear2021").tasks[task], tasks_dir).name


def run_once(executor: str, workers: int, models: tuple[str, ...], tasks: list[str], probe: tuple[str, ...],
             shared: Path, tasks_dir: Path, work: Path) -> dict[str, Any]:
    weights = ["--weights", f"atst_frame={shared / ATST_FIXTURE}"] if "atst_frame" in models else []
    command = [str(Path(sys.executable).parent / "hear-atst"), "run", "--models", ",".join(models), *weights,
               "--tasks", ",".join(tasks), "--tasks-dir", str(tasks_dir), "--embeddings-dir",
               str(work / "embeddings"), "--results-dir", str(work / "results"), "--run-dir", str(work / "run"),
               *probe, "--executor", executor, "--workers", str(workers)]
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
    parser.add_argument("--out", type=Path, default=REPO / "results", help="Where the .json/.md results go.")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="The suite (see above).")
    parser.add_argument("--quick", action="store_true", help="The suite's models on its first task, 1 grid point, "
                        "3 epochs, 1 seed; prints, writes nothing.")
    args = parser.parse_args()
    size = SIZES[args.size]
    wanted = size.tasks[:1] if args.quick else size.tasks
    probe = QUICK_PROBE if args.quick else size.probe
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as scratch:
        root = Path(scratch)
        tasks = [prepare_one(task, args.shared, root / "tasks", root) for task in wanted]
        warm_up = (size.models, tasks) if size.full_warm_up or args.quick else (("mel",), tasks[:1])
        run_once("local", 1, *warm_up, probe, args.shared, root / "tasks", root / "warm-up")  # untimed
        runs = [run_once(executor, workers, size.models, tasks, probe, args.shared, root / "tasks",
                         root / f"{executor}{workers}") for executor, workers in CONFIGURATIONS]
    single = runs[0]["wall_s"]
    local_by_workers = {row["workers"]: row["wall_s"] for row in runs if row["executor"] == "local"}
    for row in runs:
        row["speedup"] = round(single / row["wall_s"], 3)
        if row["executor"] == "ray":
            row["ray_overhead_per_job_s"] = round((row["wall_s"] - local_by_workers[row["workers"]]) / row["jobs_run"],
                                                  3)
    about = "hear probe, 1 grid point, 3 epochs, 1 seed" if args.quick else size.about
    document = {"suite": f"{', '.join(size.models)} on {len(tasks)} task(s) ({', '.join(tasks)}), {about}",
                "size": args.size, "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, Python "
                f"{platform.python_version()}", "runs": runs}
    if args.quick:
        print(json.dumps(document, indent=1))
        print("(--quick: nothing written)")
        return
    name = "bench_suite" if args.size == "small" else f"bench_suite_{args.size}"
    write_json_atomic(args.out / f"{name}.json", document)
    write_text_atomic(args.out / f"{name}.md", markdown(document))
    print(markdown(document))


if __name__ == "__main__":
    main()
