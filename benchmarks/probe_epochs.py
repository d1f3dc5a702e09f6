"""How much training does early stopping decide? Epochs and scores of the HEAR grid under the kit's fixed batch order
and under shuffled batches with several seeds, on bench_probes' ESC-50-sized problems (2000 clips, 5 folds), and of
bench_probes' plain one-configuration-at-a-time implementation of the kit's protocol (fp32) with several seeds.

Wall-time ratios between two runs of the protocol mix speed with how long early stopping lets each head train; this
measures the second part alone: for every run, the epochs trained by all heads (the grid on the first fold, then the
chosen point on the other folds; ``bench_probes.head_epochs``) and the mean test score. The runs differ only in
their seed (initialisation, batch order, dropout draws), so the spread between them is what chance does to the work.
Epoch counts do not depend on the machine's load, so rows from several invocations can be merged (``--append``).

    python benchmarks/probe_epochs.py [--dims 768 9216] [--fixed-seeds 0] [--seeds 0 1 2 3] [--kit-seeds 0]
        [--precision bf16] [--quick] [--append] [--out results] [--name probe_epochs]  ->  <out>/<name>.json and .md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_probes import KIT_MAX_EPOCHS, head_epochs, scene_problem

from evaluation.environment import cpu_model
from evaluation.kit_protocol import kit_protocol
from evaluation.probes.allocator import reuse_freed_memory
from evaluation.protocol import ProbeConfig, evaluate
from evaluation.results import write_json_atomic
from hear_atst.atomic import write_text_atomic

OURS, KIT = "ours", "kit protocol"
GRID_POINTS = 8
SOURCE = f"{time.strftime('%Y-%m-%d')}, benchmarks/probe_epochs.py"


def _load() -> float:
    """The machine's 1-minute load average when a run ends: whether its wall time was taken beside other work."""
    return round(os.getloadavg()[0], 1)


def one_run(task: Any, dim: int, shuffle: bool, seed: int, precision: str, max_epochs: int | None
            ) -> dict[str, Any]:
    """One whole protocol run of ours: its head-epochs, per-point epochs and mean test score."""
    start = time.perf_counter()
    result = evaluate(task, ProbeConfig(seeds=[seed], shuffle=shuffle, precision=precision, psds=False,
                                        max_epochs=max_epochs))
    run = result.runs[0]
    return {"dim": dim, "implementation": OURS, "order": "shuffled" if shuffle else "kit (fixed)", "seed": seed,
            "precision": precision, "head_epochs": head_epochs(run), "score": result.score["mean"],
            "grid_epochs": [point["epochs_run"] for point in run["grid"]],
            "fold_epochs": [fold["epochs_run"] for fold in run["folds"].values()],
            "seconds": round(time.perf_counter() - start, 1), "load_average": _load(), "source": SOURCE}


def kit_run(task: Any, dim: int, seed: int, max_epochs: int) -> dict[str, Any]:
    """One run of the kit's protocol, one configuration at a time in fp32 (:mod:`evaluation.kit_protocol`)."""
    start = time.perf_counter()
    result = kit_protocol(task, GRID_POINTS, max_epochs, seed, "cpu")
    return {"dim": dim, "implementation": KIT, "order": "kit (fixed)", "seed": seed, "precision": "fp32",
            "head_epochs": result["head_epochs"], "score": result["mean"], "grid_epochs": result["grid_epochs"],
            "fold_epochs": result["fold_epochs"], "seconds": round(time.perf_counter() - start, 1),
            "load_average": _load(), "source": SOURCE}


def merge_rows(previous: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``previous`` with ``rows`` added; a new row replaces an old one of the same D, implementation, order, seed and
    precision. Sorted by D, then implementation (ours first), order and seed."""
    def key(row: dict[str, Any]) -> tuple:
        return row["dim"], row["implementation"] != OURS, row["order"], row["seed"], row["precision"]
    merged = {key(row): row for row in previous}
    merged.update({key(row): row for row in rows})
    return [merged[k] for k in sorted(merged)]


def _measured(row: dict[str, Any]) -> str:
    """The day a row was measured (its source's date)."""
    return row["source"].split(",")[0]


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = ["# Early stopping and the work it decides (`benchmarks/probe_epochs.py`)", "", report["machine"], "",
             "| D | implementation | batch order | precision | seed | head-epochs | test score (mean of 5 folds) "
             "| epochs per grid point | measured |", "|---|---|---|---|---|---:|---:|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['dim']} | {row['implementation']} | {row['order']} | {row['precision']} | {row['seed']} "
                     f"| {row['head_epochs']} | {row['score']:.4f} | {' '.join(map(str, row['grid_epochs']))} "
                     f"| {_measured(row)} |")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in report["rows"]:  # rows measured on different days may come from different code: not pooled
        key = (row["dim"], row["implementation"], row["order"], row["precision"], _measured(row))
        groups.setdefault(key, []).append(row)
    for (dim, implementation, order, precision, measured), rows in groups.items():
        if len(rows) > 1:
            epochs = np.array([row["head_epochs"] for row in rows], dtype=float)
            scores = np.array([row["score"] for row in rows])
            lines.append(f"\nD = {dim}, {implementation}, {order}, {precision}, {len(rows)} seeds measured {measured}: "
                         "head-epochs "
                         f"{epochs.mean():.0f} (min {epochs.min():.0f}, max {epochs.max():.0f}, std "
                         f"{epochs.std(ddof=1):.0f}); score {scores.mean():.4f} (min {scores.min():.4f}, max "
                         f"{scores.max():.4f})")
    sources = sorted({row["source"] for row in report["rows"]})
    lines += ["", report["note"], "", "Rows measured: " + "; ".join(sources) + ".", ""]
    write_text_atomic(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[768, 9216])
    parser.add_argument("--fixed-seeds", type=int, nargs="*", default=[0],
                        help="seeds of our runs in the kit's fixed batch order")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3], help="seeds of our shuffled runs")
    parser.add_argument("--kit-seeds", type=int, nargs="*", default=[0],
                        help="seeds of the kit protocol's runs (fp32, one configuration at a time)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="our probe GEMMs")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem and 6 epochs (smoke test): the rows are printed, nothing is written")
    parser.add_argument("--append", action="store_true",
                        help="merge the rows into <out>/<name>.json instead of replacing it")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    parser.add_argument("--name", default="probe_epochs")
    args = parser.parse_args(argv)
    reuse_freed_memory()
    rows = []
    for dim in args.dims:
        task = scene_problem(200, dim, n_classes=5) if args.quick else scene_problem(2000, dim)
        max_epochs = 6 if args.quick else None
        rows += [one_run(task, dim, False, seed, args.precision, max_epochs) for seed in args.fixed_seeds]
        rows += [one_run(task, dim, True, seed, args.precision, max_epochs) for seed in args.seeds]
        rows += [kit_run(task, dim, seed, max_epochs or KIT_MAX_EPOCHS) for seed in args.kit_seeds]
    target = args.out / f"{args.name}.json"
    if args.append and target.exists():
        rows = merge_rows(json.loads(target.read_text())["rows"], rows)
    report = {"machine": f"{cpu_model()}; our probe GEMMs in {args.precision}, the kit protocol's in fp32.",
              "rows": rows,
              "note": "Runs of one D and implementation differ in their seed (initialisation, batch order, dropout "
                      "draws); our fixed-order and shuffled runs of one seed differ in batch order alone. The kit "
                      "protocol's seed s seeds its grid point i with s + i and its other folds with s "
                      "(evaluation.kit_protocol); it never shuffles. Our grid points each draw their dropout masks "
                      "from their own stream. Times (JSON `seconds`) are wall-clock, taken with other work on the "
                      "machine where `load_average` (1-minute, at the run's end) is above 2: not comparable between "
                      "rows, and not a speed measurement."}
    if args.quick:
        print(json.dumps(rows, indent=1))
    else:
        write_json_atomic(target, report)
        write_markdown(report, args.out / f"{args.name}.md")
    return report


if __name__ == "__main__":
    main()
