"""Probe-stage speed: ``evaluation.protocol.evaluate`` vs the kit's protocol run one configuration at a time.

The reference is :mod:`evaluation.kit_protocol`: the kit's protocol written plainly, one configuration at a time
(a ``torch.nn.Sequential`` head per grid point, Adam, batches in the stored order, validation scored as the kit's
``log_scores`` does, ModelCheckpoint / EarlyStopping semantics, the best point retrained on the other folds).

Problems: ESC-50-sized scene data (2000 clips, 5 folds, 50 classes, D = 768 and 9216; class-conditional
Gaussian mixtures in a 64-d latent space projected to D, plus noise) and a DCASE 2016-sized event problem
(72 files x 3000 frames at 40 ms, 11 labels, 44/14/14 files, D = 768; event-driven latent frames).
Ours runs twice in the same invocation, with fp32 and with bf16 probe GEMMs (``ProbeConfig.precision``).
On a CPU both implementations are bound by the same matrix products, so full 500-epoch grids take hours:
every run is capped at the same number of epochs (both sides train exactly as long; 15 at D = 768, 3 at
D = 9216, or ``--max-epochs``), and the output says so. For the DCASE-sized event grid one training epoch
of the reference is timed on the first ``--reference-fraction`` of the training rows and scaled up (its cost
per batch is constant; the rows are stacked before the clock starts). Before any timing both sides run once,
untimed, on a tiny problem. ``--quick`` runs a tiny version in seconds (used by the smoke test).

``--device cuda`` runs both sides on the GPU: the reference's model, inputs and targets (whole splits, held on the
device) with its probabilities brought back to numpy for scoring as the kit does, ours with
``ProbeConfig(device="cuda")``; the clock is read after synchronising the GPU. Ours in bf16 runs bf16 GEMMs there;
the reference stays fp32, as the kit. The CPU caps above can be lifted with ``--max-epochs`` (500 is the kit's grid
maximum) and ``--reference-fraction 1``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_models import clock, device_name, peak_gemm_flops, require_device

from evaluation.data import SplitEmbeddings, TaskEmbeddings, frame_labels
from evaluation.environment import cpu_model
from evaluation.kit_protocol import kit_fold, kit_head, kit_protocol, kit_rows, kit_scores, kit_train
from evaluation.probes.allocator import reuse_freed_memory
from evaluation.probes.grid import sample_grid
from evaluation.protocol import ProbeConfig, evaluate, fold_rotation
from evaluation.results import write_json_atomic
from evaluation.scores import get_score
from hear_atst.atomic import write_text_atomic

# ---------------------------------------------------------------------------------------------- problems


def scene_problem(n_clips: int, dim: int, n_classes: int = 50, seed: int = 0) -> TaskEmbeddings:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 3, 64))
    projection = rng.normal(size=(64, dim)) / 8.0
    labels = np.arange(n_clips) % n_classes
    rng.shuffle(labels)
    latent = centres[labels, rng.integers(0, 3, n_clips)] + rng.normal(scale=1.6, size=(n_clips, 64))
    x = (latent @ projection + rng.normal(scale=0.5, size=(n_clips, dim))).astype(np.float32)
    folds = np.arange(n_clips) % 5
    vocabulary = [f"class{c:02d}" for c in range(n_classes)]
    splits = {f"fold0{k}": SplitEmbeddings(f"fold0{k}", x[folds == k], [[vocabulary[c]] for c in labels[folds == k]],
                                           [f"{i}.wav" for i in np.nonzero(folds == k)[0]]) for k in range(5)}
    metadata = {"task_name": "esc50", "embedding_type": "scene", "prediction_type": "multiclass",
                "split_mode": "presplit_kfold", "splits": list(splits),
                "evaluation": ["top1_acc", "mAP", "d_prime", "aucroc"]}
    return TaskEmbeddings(metadata, vocabulary, splits)


def event_problem(n_files: int, frames: int, dim: int, seed: int = 0) -> TaskEmbeddings:
    rng = np.random.default_rng(seed)
    vocabulary = ["clearthroat", "cough", "doorslam", "drawer", "keyboard", "keys", "knock", "laughter",
                  "pageturn", "phone", "speech"]
    signatures = rng.normal(size=(len(vocabulary), 32))
    projection = rng.normal(size=(32, dim)) / 6.0
    n_test = n_valid = max(1, round(n_files * 0.2))
    names = {"train": range(n_files - 2 * n_valid), "valid": range(n_files - 2 * n_valid, n_files - n_test),
             "test": range(n_files - n_test, n_files)}
    times = np.arange(frames) * 40.0 + 20.0
    splits, events = {}, {}
    for split, indices in names.items():
        xs, ys, files, stamps = [], [], [], []
        events[split] = {}
        for i in indices:
            file_events, latent = [], rng.normal(scale=1.0, size=(frames, 32))
            for label in range(len(vocabulary)):
                for _ in range(rng.integers(1, 5)):
                    start = float(rng.uniform(0, frames * 40.0 - 4000))
                    end = start + float(rng.uniform(300, 3000))
                    file_events.append({"label": vocabulary[label], "start": start, "end": end})
                    active = (times >= start) & (times < end)
                    latent[active] += signatures[label] * 0.6
            x = latent @ projection + rng.normal(scale=0.5, size=(frames, dim))
            xs.append(x.astype(np.float32))
            ys.extend(frame_labels(file_events, times))
            files.extend([f"f{i:03d}.wav"] * frames)
            stamps.append(times)
            events[split][f"f{i:03d}.wav"] = file_events
        splits[split] = SplitEmbeddings(split, np.concatenate(xs), ys, files, np.concatenate(stamps))
    metadata = {"task_name": "dcase2016_task2", "embedding_type": "event", "prediction_type": "multilabel",
                "split_mode": "trainvaltest", "splits": ["train", "valid", "test"], "sample_duration": frames * 0.04,
                "evaluation": ["event_onset_200ms_fms", "segment_1s_er"]}
    return TaskEmbeddings(metadata, vocabulary, splits, events)


def head_epochs(run: dict[str, Any]) -> int:
    """Epochs trained by every head of one seed's run of ours: the whole grid on the first fold, then the chosen
    point on the others (the work the kit's protocol does too, so that speed can be compared per epoch)."""
    folds = list(run["folds"].values())
    return sum(point["epochs_run"] for point in run["grid"]) + sum(fold["epochs_run"] for fold in folds[1:])


# ---------------------------------------------------------------------------------------------- driver


PRECISIONS = ("fp32", "bf16")
KIT_MAX_EPOCHS = 500  # the kit's grid: a cap at least this large caps nothing
CPU_MACHINE = ("CPU, shared 2-core machine (other jobs ran at the same time, so absolute times are inflated; both "
               "sides ran under the same conditions).")


def compare(name: str, task: TaskEmbeddings, grid_points: int, max_epochs: int, device: str) -> dict[str, Any]:
    """The whole protocol: the kit's reference once, ours once per probe precision; times, scores, ratios."""
    start = clock(device)
    reference = kit_protocol(task, grid_points, max_epochs, seed=0, device=device)
    reference_s = clock(device) - start
    row: dict[str, Any] = {"problem": name, "grid_points": grid_points, "max_epochs_cap": max_epochs,
                           "reference_s": round(reference_s, 2), "reference_score": reference["mean"],
                           "reference_head_epochs": reference["head_epochs"], "primary_score": task.primary_score}
    for precision in PRECISIONS:
        start = clock(device)
        ours = evaluate(task, ProbeConfig(grid_points=grid_points, max_epochs=max_epochs, psds=False,
                                          precision=precision, device=device))
        seconds = clock(device) - start
        row[f"ours_{precision}_s"] = round(seconds, 2)
        row[f"speedup_{precision}"] = round(reference_s / seconds, 2)
        row[f"ours_{precision}_score"] = ours.score["mean"]
        row[f"score_difference_{precision}"] = ours.score["mean"] - reference["mean"]
        row[f"ours_{precision}_head_epochs"] = head_epochs(ours.runs[0])
    print(json.dumps(row), flush=True)
    return row


def warm_up(device: str) -> None:
    """Both sides once on a tiny problem, untimed: one-time costs (torch.optim's first optimizer, about a second of
    imports; on a GPU, CUDA, cuBLAS and cuDNN starting) would otherwise be charged to whichever side runs first."""
    task = scene_problem(200, 32, n_classes=5)
    kit_protocol(task, 2, 3, 0, device)
    for precision in PRECISIONS:
        evaluate(task, ProbeConfig(grid_points=2, max_epochs=3, psds=False, precision=precision, device=device))


def first_rows(task: TaskEmbeddings, split: str, fraction: float) -> TaskEmbeddings:
    """``task`` with only the first ``fraction`` of one split's rows (for timing a partial epoch)."""
    old = task.splits[split]
    n = max(1, round(old.embeddings.shape[0] * fraction))
    stamps = old.timestamps[:n] if old.timestamps is not None else None
    splits = {**task.splits, split: SplitEmbeddings(split, old.embeddings[:n], old.labels[:n], old.filenames[:n],
                                                    stamps)}
    return TaskEmbeddings(task.metadata, task.label_vocabulary, splits, task.events)


def epoch_gemm_flops(confs: list[dict[str, Any]], n_rows: int, n_in: int, n_out: int) -> int:
    """FLOPs of the matrix products of one training epoch of every grid point: each layer's forward and weight
    gradient, and the input gradient of every layer but the first (the embeddings need none)."""
    total = 0
    for conf in confs:
        dims = [n_in] + [conf["hidden_dim"]] * conf["hidden_layers"] + [n_out]
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
            total += (2 if layer == 0 else 3) * 2 * n_rows * fan_in * fan_out
    return total


def event_components(task: TaskEmbeddings, grid_points: int, reference_fraction: float, device: str) -> dict[str, Any]:
    """Full-size DCASE: one training epoch and one validation check, timed on each side, then extrapolated.

    Training: the reference trains each grid point alone for one epoch on the first ``reference_fraction`` of
    the training rows, scaled by the fraction's inverse (the rows are stacked on the device before the clock
    starts, as the kit loads a task once); ours trains the grid as banks for one full epoch, in fp32 and in bf16
    (building the banks and one check on a single validation row included, which can only understate its speed).
    Check, for the whole grid: every head's eval-mode forward on the validation rows (the reference one model at a
    time, ours a bank per architecture), then per grid point the reference regroups frames per file, picks the
    post-processing with sed_eval and scores every metric with sed_eval, and ours post-processes vectorised and
    scores with the fast scorer. The whole grid is extrapolated at the kit's minimum
    for dcase2016_task2 (210 epochs = 21 checks, when the best check is the first) and at its maximum (500 epochs,
    50 checks).

    Roofline: the epoch's GEMM FLOPs against the peak GEMM FLOP/s measured in the same run give each side's
    fraction of peak, and the speed-up over the reference that an implementation running every product at the
    bf16 peak, with nothing else to do, would reach on this machine (``ceiling_speedup_bf16``). Both sides train on
    ``device``; the checks score on the CPU, as the kit's do.
    """
    from evaluation.events import FrameLayout, postprocessing_settings, select_postprocessing
    from evaluation.probes.mlp import HeadConfig
    from evaluation.probes.train import Member, Schedule, train_heads

    confs = sample_grid(task.metadata, grid_points)
    peaks = {precision: peak_gemm_flops(dtype, device) for precision, dtype in
             (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    split = fold_rotation(task.metadata)[0]
    part = first_rows(task, "train", reference_fraction)
    fold = kit_fold(part, split, device)
    start = clock(device)
    for i, conf in enumerate(confs):
        kit_train(part, split, {**conf, "check_val_every_n_epoch": 2}, 1, i, fold)
    reference_epoch = (clock(device) - start) / reference_fraction
    print(json.dumps({"reference_epoch_s": reference_epoch}), flush=True)
    del fold
    x, y = kit_rows(task, ["train", "valid", "test"], device)
    y_device = torch.from_numpy(y).to(device)
    vocabulary = [str(label) for label in task.label_vocabulary]
    n_train = task.splits["train"].embeddings.shape[0]
    n_valid = task.splits["valid"].embeddings.shape[0]
    # the one check train_heads needs (each head returns a checkpoint) sees a single validation row: an epoch alone
    members = [Member(HeadConfig(c["hidden_layers"], c["hidden_dim"], c["dropout"], c["lr"], c["initialization"]),
                      i, 0, np.arange(n_train), np.arange(n_train, n_train + 1), lambda p, lg: (0.0, None))
               for i, c in enumerate(confs)]
    ours_epoch = {}
    for precision in PRECISIONS:
        start = clock(device)
        trained = train_heads(members, x, y_device, Schedule(max_epochs=1, check_every=1), True, precision)
        ours_epoch[precision] = clock(device) - start
        print(json.dumps({f"ours_epoch_{precision}_s": ours_epoch[precision]}), flush=True)
    # One check of the whole grid on each side: every head's eval-mode forward on the validation rows, then
    # post-processing selection and scoring (of one trained head's real predictions, once per grid point).
    from evaluation.probes.mlp import MLPBank, predict_bank
    x_valid = x[n_train:n_train + n_valid].contiguous()  # stacked once, as the kit holds its validation split
    models = [kit_head(conf, x.shape[1], len(vocabulary)).to(device).eval() for conf in confs]
    start = clock(device)
    for model in models:
        with torch.no_grad():
            torch.sigmoid(model(x_valid)).cpu().numpy()
    reference_forward = clock(device) - start
    families: dict[Any, list[Any]] = {}
    for result in trained:
        families.setdefault(result.state.config.family, []).append(result.state)
    banks = [MLPBank(states, device) for states in families.values()]
    start = clock(device)
    for bank in banks:
        outputs = predict_bank(bank, x_valid, True)[0].cpu().numpy()
    ours_forward = clock(device) - start
    probs = outputs[0]
    valid = task.splits["valid"]
    start = time.perf_counter()
    kit_scores(task, ["valid"], probs, y[n_train:n_train + n_valid], None)
    reference_check = reference_forward + (time.perf_counter() - start) * grid_points
    layout = FrameLayout.from_rows(valid.filenames, valid.timestamps)
    start = time.perf_counter()
    select_postprocessing(layout, probs, task.events["valid"], vocabulary, postprocessing_settings(task.metadata),
                          get_score(task.primary_score))
    ours_check = ours_forward + (time.perf_counter() - start) * grid_points
    flops = epoch_gemm_flops(confs, n_train, x.shape[1], len(vocabulary))
    row: dict[str, Any] = {"problem": "event_full_size_components", "grid_points": grid_points,
                           "reference_fraction": reference_fraction, "reference_epoch_s": reference_epoch,
                           "reference_check_s": reference_check, "ours_check_s": ours_check,
                           "epoch_gemm_gflop": flops / 1e9, "peak_fp32_gflops": peaks["fp32"] / 1e9,
                           "peak_bf16_gflops": peaks["bf16"] / 1e9,
                           "reference_fraction_of_fp32_peak": flops / reference_epoch / peaks["fp32"],
                           "ceiling_speedup_bf16": reference_epoch / (flops / peaks["bf16"])}
    for precision in PRECISIONS:
        row[f"ours_epoch_{precision}_s"] = ours_epoch[precision]
        row[f"ours_{precision}_fraction_of_{precision}_peak"] = flops / ours_epoch[precision] / peaks[precision]
        for label, epochs in (("min", 210), ("max", 500)):
            reference = epochs * reference_epoch + epochs // 10 * reference_check
            ours = epochs * ours_epoch[precision] + epochs // 10 * ours_check
            row[f"extrapolated_{label}_reference_s"] = reference
            row[f"extrapolated_{label}_ours_{precision}_s"] = ours
            row[f"extrapolated_{label}_speedup_{precision}"] = reference / ours
    print(json.dumps(row))
    return row


def seconds_text(value: float) -> str:
    """Whole seconds from 10 s up, two significant digits below (GPU epochs take about a second)."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """A short human summary of ``bench_probes.json``."""
    where = "this CPU" if report["device"] == "cpu" else "this GPU"
    capped = any(row.get("max_epochs_cap", KIT_MAX_EPOCHS) < KIT_MAX_EPOCHS for row in report["rows"])
    lines = ["# Probe-stage benchmark (`benchmarks/bench_probes.py`)", "", report["machine"], "",
             "## Whole protocol, both sides capped at the same number of epochs", "",
             "| problem | grid points | epoch cap | kit protocol, one config at a time (s) | ours fp32 (s) "
             "| ours bf16 (s) | speed-up fp32 | speed-up bf16 | kit score | ours fp32 | ours bf16 "
             "| difference fp32 | difference bf16 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if "reference_s" in row:
            lines.append(f"| {row['problem']} | {row['grid_points']} | {row['max_epochs_cap']} | {row['reference_s']} "
                         f"| {row['ours_fp32_s']} | {row['ours_bf16_s']} | {row['speedup_fp32']}x "
                         f"| {row['speedup_bf16']}x | {row['reference_score']:.4f} | {row['ours_fp32_score']:.4f} "
                         f"| {row['ours_bf16_score']:.4f} | {row['score_difference_fp32']:+.4f} "
                         f"| {row['score_difference_bf16']:+.4f} |")
    counted = [row for row in report["rows"] if "reference_head_epochs" in row]
    if counted:
        lines += ["", "Epochs trained by all heads (the grid on the first fold, then the chosen point on the others; "
                  "early stopping decides them, so the two sides need not do the same work):", ""]
        lines += [f"- {row['problem']}: kit protocol {row['reference_head_epochs']}, ours fp32 "
                  f"{row['ours_fp32_head_epochs']}, ours bf16 {row['ours_bf16_head_epochs']}" for row in counted]
    for row in report["rows"]:
        if row["problem"] == "event_full_size_components":
            lines += ["", "## DCASE 2016-sized event grid (72 x 3000 frames, D = 768): measured parts, extrapolated",
                      "", f"- one epoch of the 8-point grid: kit protocol {seconds_text(row['reference_epoch_s'])} s "
                      f"(timed on {row['reference_fraction']:.0%} of the training rows, scaled), "
                      f"ours fp32 {seconds_text(row['ours_epoch_fp32_s'])} s, "
                      f"ours bf16 {seconds_text(row['ours_epoch_bf16_s'])} s",
                      "- one validation check of the 8 points (forward on the validation rows, post-processing, "
                      f"scoring): kit protocol {row['reference_check_s']:.1f} s, ours {row['ours_check_s']:.2f} s",
                      "- whole grid at the kit's minimum (210 epochs, 21 checks): "
                      f"fp32 {row['extrapolated_min_speedup_fp32']:.2f}x, "
                      f"bf16 {row['extrapolated_min_speedup_bf16']:.2f}x; at its maximum (500 epochs, 50 checks): "
                      f"fp32 {row['extrapolated_max_speedup_fp32']:.2f}x, "
                      f"bf16 {row['extrapolated_max_speedup_bf16']:.2f}x (equal by construction: both sides check "
                      "every 10 epochs, so the ratio does not depend on the run length)"]
            if "ceiling_speedup_bf16" in row:
                lines.append(
                    f"- roofline: one epoch is {row['epoch_gemm_gflop']:.0f} GFLOP of matrix products; peak GEMM in "
                    f"the same run {row['peak_fp32_gflops']:.0f} GFLOP/s fp32, {row['peak_bf16_gflops']:.0f} "
                    f"bf16. The kit protocol runs at {row['reference_fraction_of_fp32_peak']:.0%} of the fp32 peak, "
                    f"ours at {row['ours_fp32_fraction_of_fp32_peak']:.0%} (fp32) and "
                    f"{row['ours_bf16_fraction_of_bf16_peak']:.0%} of the bf16 peak (bf16). Every product at the "
                    f"bf16 peak and nothing else would be {row['ceiling_speedup_bf16']:.1f}x the kit protocol: "
                    f"the most any implementation of this protocol can gain on {where}")
    lines += ["", "Score differences are ours minus the kit protocol (ours shuffles batches; the kit's order is "
              "fixed)." + (f" Full 500-epoch grids were not run on {where}: see the epoch cap column." if capped
                           else ""), ""]
    write_text_atomic(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny problems, seconds (smoke test): the rows are printed, nothing is written")
    parser.add_argument("--max-epochs", type=int, help="epoch cap for both implementations [15 at D=768, 3 at D=9216]")
    parser.add_argument("--reference-fraction", type=float, default=0.25,
                        help="share of the DCASE training rows the reference's epoch is timed on")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both implementations train")
    parser.add_argument("--machine", help="one line on the machine and its load, written to the markdown summary "
                        "[cpu: a shared 2-core CPU; cuda: the GPU's and the host CPU's names]")
    parser.add_argument("--threads", type=int, help="torch threads for both implementations [torch's default]")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    parser.add_argument("--name", help="<out>/<name>.json and .md, one name per machine (rows of other problems "
                        "already there are kept) [bench_probes; bench_probes_cuda on cuda]")
    parser.add_argument("--only", choices=["scene768", "scene9216", "event", "event_components"], action="append")
    args = parser.parse_args(argv)
    require_device(parser, args.device)
    if not 0 < args.reference_fraction <= 1:
        parser.error(f"--reference-fraction {args.reference_fraction}: give a share in (0, 1]")
    cuda = args.device == "cuda"
    machine = args.machine or (f"{device_name('cuda')} (CUDA {torch.version.cuda}), host CPU {cpu_model()}; both "
                               "sides trained on the GPU." if cuda else CPU_MACHINE)
    name = args.name or ("bench_probes_cuda" if cuda else "bench_probes")
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()  # ours sets it on first use: set before either side runs, so both are timed under it
    torch.manual_seed(0)
    if args.quick:
        problems = {"scene768": (scene_problem(200, 32, n_classes=5), 2, 3),
                    "event": (event_problem(5, 200, 16), 2, 10)}
    else:
        problems = {"scene768": (scene_problem(2000, 768), 8, args.max_epochs or 15),
                    "scene9216": (scene_problem(2000, 9216), 8, args.max_epochs or 3)}
        if args.only and "event" in args.only:  # the whole event protocol: hours on a CPU, on request only
            problems["event"] = (event_problem(72, 3000, 768), 8, args.max_epochs or 30)
    if not args.quick:
        warm_up(args.device)
    rows = [compare(problem, task, points, epochs, args.device) for problem, (task, points, epochs) in problems.items()
            if not args.only or problem in args.only]
    if not args.quick and (not args.only or "event_components" in args.only):
        rows.append(event_components(event_problem(72, 3000, 768), 8, args.reference_fraction, args.device))
    report = {"device": args.device, "device_name": device_name(args.device), "threads": torch.get_num_threads(),
              "quick": args.quick, "glibc_thresholds_raised": reuse_freed_memory(), "rows": rows,
              "machine": f"{machine} {torch.get_num_threads()} torch thread(s).",
              "note": "both implementations are capped at max_epochs_cap epochs per run (same training length); "
                      "timings are wall-clock on a shared machine"
                      + ("; the GPU is synchronised before every clock reading" if cuda else "")}
    if not args.quick:
        target = args.out / f"{name}.json"
        previous = json.loads(target.read_text()) if target.exists() else {"rows": []}
        if previous.get("device", "cpu") != args.device:  # one file, one machine
            previous["rows"] = []
        problems_run = {row["problem"] for row in rows}
        kept = [row for row in previous["rows"] if row["problem"] not in problems_run
                and ("ours_fp32_s" in row or "ours_epoch_fp32_s" in row)]  # older schemas are dropped
        report["rows"] = kept + rows
        write_json_atomic(target, report)
        write_markdown(report, args.out / f"{name}.md")
    return report


if __name__ == "__main__":
    main()
