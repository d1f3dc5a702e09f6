"""The kNN probe's cost beside the MLP grid's, on the problems of ``bench_probes.py``.

For each problem, the whole probe stage (``evaluation.protocol.evaluate``, one seed) runs with ``--protocol knn``
(every (k, weighting) candidate voted on the first fold's validation rows, the chosen one on every other fold, and
the tests) and with the HEAR MLP grid (8 points, capped at the same epochs as ``bench_probes.py``: 15 at D = 768, 3
at D = 9216, or ``--max-epochs``); the output gives both wall-clock times, their ratio and both scores. Both run
once, untimed, on a tiny problem first. ``--quick`` runs tiny problems in seconds, prints the rows and writes
nothing (the smoke test); otherwise ``<out>/bench_knn.json`` and ``.md`` are written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from bench_models import clock, device_name, require_device
from bench_probes import event_problem, scene_problem

from evaluation.data import TaskEmbeddings
from evaluation.protocol import ProbeConfig, evaluate
from evaluation.results import write_json_atomic
from hear_atst.atomic import write_text_atomic


def timed(task: TaskEmbeddings, config: ProbeConfig, device: str) -> tuple[float, float]:
    """(seconds, mean primary score) of one whole probe stage."""
    start = clock(device)
    result = evaluate(task, config)
    return clock(device) - start, result.score["mean"]


def compare(name: str, task: TaskEmbeddings, grid_points: int, max_epochs: int, device: str) -> dict[str, Any]:
    knn_s, knn_score = timed(task, ProbeConfig(protocol="knn", psds=False, device=device), device)
    mlp_s, mlp_score = timed(task, ProbeConfig(grid_points=grid_points, max_epochs=max_epochs, psds=False,
                                               device=device), device)
    row = {"problem": name, "rows": sum(s.embeddings.shape[0] for s in task.splits.values()),
           "dim": next(iter(task.splits.values())).embeddings.shape[1], "primary_score": task.primary_score,
           "knn_s": round(knn_s, 3), "knn_score": knn_score, "mlp_grid_points": grid_points,
           "mlp_max_epochs_cap": max_epochs, "mlp_s": round(mlp_s, 3), "mlp_score": mlp_score,
           "mlp_over_knn_time": round(mlp_s / knn_s, 1)}
    print(json.dumps(row), flush=True)
    return row


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = ["# kNN probe cost beside the MLP grid (`benchmarks/bench_knn.py`)", "", report["machine"], "",
             "| problem | rows | D | kNN (s) | MLP grid (s) | points | epoch cap | MLP / kNN time | kNN score "
             "| MLP score |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['problem']} | {row['rows']} | {row['dim']} | {row['knn_s']} | {row['mlp_s']} "
                     f"| {row['mlp_grid_points']} | {row['mlp_max_epochs_cap']} | {row['mlp_over_knn_time']}x "
                     f"| {row['knn_score']:.4f} | {row['mlp_score']:.4f} |")
    lines += ["", "The MLP grid is capped at the epoch cap shown (a full grid trains up to 500 epochs): its time here "
              "is a lower bound.", ""]
    write_text_atomic(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny problems, seconds (smoke test): the rows are printed, nothing is written")
    parser.add_argument("--max-epochs", type=int, help="epoch cap of the MLP grid [15 at D=768, 3 at D=9216]")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both probes run")
    parser.add_argument("--machine", help="one line on the machine and its load, for the markdown summary")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = parser.parse_args(argv)
    require_device(parser, args.device)
    torch.manual_seed(0)
    if args.quick:
        problems = {"scene": (scene_problem(200, 32, n_classes=5), 2, 3), "event": (event_problem(5, 200, 16), 2, 10)}
    else:
        problems = {"scene768": (scene_problem(2000, 768), 8, args.max_epochs or 15),
                    "scene9216": (scene_problem(2000, 9216), 8, args.max_epochs or 3),
                    "event768": (event_problem(72, 3000, 768), 8, args.max_epochs or 30)}
        warm = scene_problem(200, 32, n_classes=5)
        timed(warm, ProbeConfig(protocol="knn", psds=False, device=args.device), args.device)
        timed(warm, ProbeConfig(grid_points=2, max_epochs=3, psds=False, device=args.device), args.device)
    rows = [compare(name, task, points, epochs, args.device) for name, (task, points, epochs) in problems.items()]
    report = {"device": args.device, "device_name": device_name(args.device), "threads": torch.get_num_threads(),
              "quick": args.quick, "rows": rows,
              "machine": args.machine or f"{device_name(args.device)}, {torch.get_num_threads()} torch thread(s)."}
    if not args.quick:
        write_json_atomic(args.out / "bench_knn.json", report)
        write_markdown(report, args.out / "bench_knn.md")
    return report


if __name__ == "__main__":
    main()
