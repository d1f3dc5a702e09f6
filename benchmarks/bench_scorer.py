"""Event scorer speed: the fast vectorised onset-F / segment-ER vs sed_eval, on the same predicted events.

Predictions come from a least-squares fit on the DCASE-sized synthetic event problem of ``bench_probes``
(14 validation-sized files x 3000 frames); events from the kit's post-processing at thresholds 0.5 and
0.3. Every pair of results is checked for equality before timing is reported; times are the best of
``--repeats`` passes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import time
from pathlib import Path

import numpy as np
from bench_probes import event_problem

from evaluation.environment import cpu_model
from evaluation.events import FrameLayout, postprocessing_settings
from evaluation.results import write_json_atomic
from evaluation.scores import SCORES


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=70, help="files in the problem (20 %% are scored)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    parser.add_argument("--name", default="bench_scorer", help="output file name, e.g. bench_scorer_<cpu>")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per scorer; the best is kept")
    args = parser.parse_args(argv)
    importlib.import_module("sed_eval")  # imported before timing: the first timed call would pay for the import
    task = event_problem(args.files, 3000, 64)
    labels = task.label_vocabulary
    index = {label: i for i, label in enumerate(labels)}

    def design(split):
        return np.hstack([task.splits[split].embeddings, np.ones((task.splits[split].embeddings.shape[0], 1))])

    y = np.zeros((len(task.splits["train"].labels), len(labels)))
    for row, active in enumerate(task.splits["train"].labels):
        y[row, [index[label] for label in active]] = 1
    probabilities = np.clip(design("test") @ np.linalg.lstsq(design("train"), y, rcond=None)[0], 0, 1)
    split = task.splits["test"]
    layout = FrameLayout.from_rows(split.filenames, split.timestamps)
    predictions = [layout.events(probabilities, labels, s, threshold=t)
                   for t in (0.5, 0.3) for s in postprocessing_settings(task.metadata)]
    rows = []
    for name in ("event_onset_200ms_fms", "segment_1s_er"):
        timings = {}
        results = {}
        for backend in ("sed_eval", "fast"):
            passes = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                results[backend] = [SCORES[name].event(p, task.events["test"], labels, backend) for p in predictions]
                passes.append(time.perf_counter() - start)
            timings[backend] = min(passes)
        if results["fast"] != results["sed_eval"]:
            raise AssertionError(f"{name}: fast scorer differs from sed_eval: {results}")
        rows.append({"score": name, "files": len(layout.files), "calls": len(predictions),
                     "events_scored": sum(len(v) for p in predictions for v in p.values()),
                     "sed_eval_s": timings["sed_eval"], "fast_s": timings["fast"],
                     "speedup": timings["sed_eval"] / timings["fast"], "identical": True, "repeats": args.repeats})
        print(json.dumps(rows[-1]))
    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", "rows": rows}
    write_json_atomic(args.out / f"{args.name}.json", report)
    return report


if __name__ == "__main__":
    main()
