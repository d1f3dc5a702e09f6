"""Downstream effect of ``--precision bf16``: the same real tasks and probes, embeddings in float32 and in bfloat16.

Runs the regression suite's tasks (``results/regression.json``: ESC-10, the keyword task, the speaker task, DCASE 2016
scenes cut to 30 s, all prepared from ``../shared``) with every weighted model on its fixture checkpoint, once with
float32 embeddings and once with bfloat16 embeddings, under the suite's probe settings with seeds 0..n-1 on both
(seed s of the two precisions starts from the same initialisation and batch order, so a pair of runs differs only by
the embeddings). For each (model, task) it records both primary scores (mean over the seeds), the paired per-seed
differences with their mean and standard error, and the relative error of every split's bfloat16 embedding matrix
against float32 (``||e_bf16 - e_fp32|| / ||e_fp32||``).

The fixture checkpoints are reduced-size (192 wide, 2 blocks) and untrained, so this measures how much bfloat16
moves the protocol's numbers, not the official models' scores.

    python benchmarks/bench_bf16_scores.py [--models atst_frame atst_clip asit] [--tasks esc10 keywords] [--seeds 5]
        [--shared ../shared] [--work DIR [--resume]] [--out results/bench_bf16_scores]  ->  <out>.json and <out>.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.embeddings import load_task_embeddings, task_embeddings_dir
from evaluation.environment import cpu_model
from evaluation.leaderboard.baseline import load_regression
from evaluation.protocol import ProbeConfig, summarize
from evaluation.results import RESULTS_FILENAME, read_results, write_json_atomic
from evaluation.runner import resolve_model, run_eval, run_folder
from evaluation.suite.shared_tasks import prepare_tasks, resolve_shared
from evaluation.taskfolder import TaskFolder
from hear_atst.atomic import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
FIXTURE_WEIGHTS = {  # relative to ../shared
    "atst_frame": "fixtures/atst_frame_lightning.ckpt",
    "atst_clip": "fixtures/atst_clip_lightning.ckpt",
    "asit": "fixtures/asit.pt",
}
PRECISIONS = ("fp32", "bf16")
SCORE_TARGET = 0.005  # downstream scores within 0.005 of float32
EMBEDDING_TARGET = 0.02  # embeddings within 2 % relative error


def relative_errors(fp32_dir: Path, bf16_dir: Path) -> dict[str, float]:
    """Per split: ``||bf16 - fp32|| / ||fp32||`` of the split's embedding matrix."""
    reference, other = load_task_embeddings(fp32_dir), load_task_embeddings(bf16_dir)
    errors = {}
    for name, split in reference.splits.items():
        expected = split.embeddings.astype(np.float64)
        difference = other.splits[name].embeddings.astype(np.float64) - expected
        errors[name] = float(np.linalg.norm(difference) / np.linalg.norm(expected))
    return errors


def one_test_item(folder: TaskFolder) -> float | None:
    """How much one test clip moves a scene task's mean accuracy (k-fold: every clip is tested once); None for
    event tasks."""
    if folder.embedding_type != "scene":
        return None
    tests = ["test"] if folder.metadata.get("split_mode") == "trainvaltest" else folder.splits
    return 1.0 / sum(len(folder.labels[split]) for split in tests)


def seed_scores(results: dict[str, Any]) -> list[float]:
    """The primary score of every seed's run: the mean over its folds, NaN folds left out (NaN when all are)."""
    primary = results["primary_score"]
    return [summarize([fold["scores"][primary] for fold in run["folds"].values()])["mean"] for run in results["runs"]]


def paired_difference(fp32: list[float], bf16: list[float], higher_is_better: bool) -> dict[str, Any]:
    """Per-seed ``bf16 - fp32`` (sign flipped for error rates, so positive = bf16 better), their mean and standard
    error over the seeds where both are finite (None where fewer than one / two such seeds)."""
    sign = 1.0 if higher_is_better else -1.0
    per_seed = [sign * (b - f) for f, b in zip(fp32, bf16, strict=True)]
    summary = summarize(per_seed)
    return {"per_seed": per_seed, "difference": summary["mean"] if summary["n"] else None,
            "standard_error": summary["std"] / math.sqrt(summary["n"]) if summary["n"] > 1 else None}


def run_model_task(model: str, weights: Path, folder: TaskFolder, probe: dict[str, Any], work: Path,
                   resume: bool) -> dict[str, Any]:
    """Both precisions of one (model, task): scores per seed and their mean, the paired difference, embedding
    errors.

    With ``resume``, a precision whose ``results.json`` is already under ``work`` is read instead of re-run.
    """
    row: dict[str, Any] = {"model": model, "task": folder.name, "one_test_item": one_test_item(folder)}
    dirs = {}
    for precision in PRECISIONS:
        setup = resolve_model(model, weights, {}, precision=precision)
        done = run_folder(work / "results", setup, folder, ProbeConfig(**probe)) / RESULTS_FILENAME
        if resume and done.is_file():
            results = read_results(done)
        else:
            results = run_eval(setup, folder, embeddings_dir=work / "embeddings", results_dir=work / "results",
                               probe=ProbeConfig(**probe), progress=False).results
        row["metric"] = results["primary_score"]
        row[f"{precision}_score"] = results["score"]["mean"]  # None when the score is NaN (no events found)
        row[f"{precision}_seed_scores"] = seed_scores(results)
        dirs[precision] = task_embeddings_dir(work / "embeddings", setup, folder)
    row.update(paired_difference(row["fp32_seed_scores"], row["bf16_seed_scores"], results["higher_is_better"]))
    row["embedding_relative_error"] = relative_errors(dirs["fp32"], dirs["bf16"])
    return row


def _score(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "NaN"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# bfloat16 vs float32 embeddings: downstream scores (`benchmarks/bench_bf16_scores.py`)",
        "",
        f"Machine: {report['machine']}; {report['date']}. Tasks and probe: the regression suite's "
        f"(`results/regression.json`: {json.dumps(report['probe'])}). Weights: the reduced fixture checkpoints "
        "(192 wide, 2 blocks, untrained), so these numbers show how far bfloat16 moves the protocol's scores, "
        "not the official models' scores.",
        "",
        f"Scores (fp32, bf16) are each run's results.json mean over folds x seeds {report['probe']['seeds']} "
        "(the same seeds on both precisions; NaN folds left out). Difference = the mean over seeds of bf16 - fp32 "
        "of the same seed (each seed's score its mean over finite folds; a seed NaN on either side is left out), "
        "signed so that positive means bf16 scored better (error rates flipped), with its standard error over "
        "the seeds; where a seed or fold is NaN it need not equal the difference of the two columns. "
        f"Targets: |difference| <= {SCORE_TARGET}, embedding relative error <= {EMBEDDING_TARGET}. "
        "'One test item' is how much a single test clip changes one seed's score: on these small tasks it is the "
        "resolution of a single run (the probe is retrained on each precision's embeddings, so a clip near a "
        "decision boundary can flip).",
        "",
        "| model | task | metric | fp32 | bf16 | difference | standard error | one test item "
        "| max embedding rel. err. |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        error = max(row["embedding_relative_error"].values())
        lines.append(f"| {row['model']} | {row['task']} | {row['metric']} | {_score(row['fp32_score'])} | "
                     f"{_score(row['bf16_score'])} | {_score(row['difference'], signed=True)} | "
                     f"{_score(row['standard_error'])} | "
                     f"{_score(row['one_test_item']) if row['one_test_item'] else '–'} | {error:.2e} |")
    summary = report["summary"]
    lines += ["", f"Largest |difference|: {summary['max_abs_difference']:.4f}; mean difference "
              f"{summary['mean_difference']:+.4f}; largest embedding relative error "
              f"{summary['max_embedding_relative_error']:.2e}. Of {summary['compared']} compared pairs, "
              f"{summary['within_target']} differ by at most {SCORE_TARGET} and "
              f"{summary['within_two_standard_errors']} lie within two standard errors of 0."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regression", type=Path, default=REPO / "results" / "regression.json")
    parser.add_argument("--models", nargs="+", default=list(FIXTURE_WEIGHTS), choices=list(FIXTURE_WEIGHTS))
    parser.add_argument("--tasks", nargs="+", default=None, help="suite task names (default: all)")
    parser.add_argument("--seeds", type=int, default=5, help="probe seeds 0..n-1 on both precisions")
    parser.add_argument("--shared", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--resume", action="store_true", help="read runs already finished under --work")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench_bf16_scores")
    args = parser.parse_args()

    suite, _, _ = load_regression(args.regression)
    shared = resolve_shared(suite, args.regression, args.shared)
    if args.tasks:
        unknown = set(args.tasks) - set(suite.tasks)
        if unknown:
            parser.error(f"unknown suite tasks {sorted(unknown)}; the suite has {sorted(suite.tasks)}")
        suite = dataclasses.replace(suite, tasks={n: t for n, t in suite.tasks.items() if n in args.tasks})
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: give at least 1")
    probe = {**suite.probe, "seeds": list(range(args.seeds))}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        folders = prepare_tasks(suite, shared, work, print)
        rows = []
        for model in args.models:
            for name, folder in folders.items():
                row = run_model_task(model, shared / FIXTURE_WEIGHTS[model], folder, probe, work, args.resume)
                row["task"] = name
                print(f"{model}/{name}: fp32 {_score(row['fp32_score'])} bf16 {_score(row['bf16_score'])} "
                      f"({_score(row['difference'], signed=True)} +- {_score(row['standard_error'])})", flush=True)
                rows.append(row)
    differences = [row["difference"] for row in rows if row["difference"] is not None]
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "probe": probe,
        "rows": rows,
        "summary": {
            "max_abs_difference": max(abs(d) for d in differences),
            "mean_difference": float(np.mean(differences)),
            "max_embedding_relative_error": max(max(r["embedding_relative_error"].values()) for r in rows),
            "compared": len(differences),
            "within_target": sum(abs(d) <= SCORE_TARGET for d in differences),
            "within_two_standard_errors": sum(abs(r["difference"]) <= 2 * r["standard_error"] for r in rows
                                              if r["difference"] is not None and r["standard_error"] is not None),
        },
    }
    write_json_atomic(args.out.with_suffix(".json"), report)
    write_text_atomic(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
