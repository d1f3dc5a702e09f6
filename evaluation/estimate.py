"""What an ``eval`` run will do and how long it should take on this machine, before it starts.

The work: clips and seconds of audio to embed (or found in the cache), the rows x dimensions the probes train
on, grid points, folds and seeds. The time comes from a short calibration on the run's device:

- **embedding**: the model is loaded (timed) and run on noise clips as long as the task's (at most 10 s each):
  about one second of audio first (after one call to warm up), then batches twice as large until a call takes
  half a second or the batch is the run's own (clips of equal length, up to 80 s of audio). Seconds of audio per
  second times the task's audio gives the model's share; the same call gives the embedding size and, for event
  tasks, the frames per second (so the rows the probes will see). The stage's file work is timed by the stage's
  own functions in a scratch folder on the embeddings folder's file system, removed after
  (:func:`calibrate_files`): per clip, its audio checked, then read and hashed for the manifest; its files
  written (each atomically: fsync of the file and of its folder), with noise embeddings of the calibrated size
  and the clip's real labels; its share of the split's arrays collected from them. Per batch, its manifest
  records appended (fsynced). Once, the folder prepared (identity, config, the task's files) and closed
  (durations, manifest, profile, marker).
- **probes**: every bank the run trains (heads of one architecture and schedule; for the retraining, the
  point's head on every other fold, per architecture in the grid) is trained for three epochs, each validated, by
  the real training loop on random rows of the task's width (at most two batches of training rows and 4096
  validation rows); the last two epochs' training and validation times, scaled to the task's rows, plus one
  scoring of the validation split with the task's primary score (event tasks: the post-processing search on the
  real reference events, with predictions near them), give a head-epoch:
  ``epoch / heads + (validation / heads + scoring) / check interval``.

Early stopping decides most of the probe time and cannot be calibrated: a head trains at least ``check_every x
(patience + 1)`` epochs when it can stop (its first check best, then ``patience`` checks without improvement),
and no more than ``max_epochs``. The expected epochs take :data:`TYPICAL_STOP_SHARE` of the span between the
two (measured: the HEAR grid's heads on ESC-50-sized problems, ``results/probe_epochs_amd_epyc.md``, trained
~60 % of it); the bounds (every head stopping at its earliest, every head to ``max_epochs``) are shown beside
it: an easy task's heads stop near the earliest (the synthetic ``demo_events`` under the default grid took a third
of the expected figure). The retraining of the chosen point on
the other folds is estimated as the mean over the grid points (which one is chosen is not known yet).
Not estimated: resampling a missing sample-rate folder (the files' timing then reads the original rate's audio),
and the test pass (PSDS included), which is small next to the stages above on the tasks measured.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

from evaluation.audio_manifest import ClipRecord, append_records
from evaluation.data import frame_labels
from evaluation.embeddings import (
    DEFAULT_BATCH_SECONDS,
    ModelSetup,
    close_folder,
    folder_config,
    is_complete,
    plan_batches,
    prepare_folder,
    read_clip,
    task_embeddings_dir,
    write_clip,
    write_split_arrays,
)
from evaluation.environment import cpu_model
from evaluation.events import FrameLayout, postprocessing_settings, select_postprocessing
from evaluation.probes.base import ProbeContext
from evaluation.probes.heads import TrainedHeadsProbe
from evaluation.probes.mlp import HeadConfig
from evaluation.probes.train import Member, Schedule, train_heads
from evaluation.progress import BankStarted, EpochFinished, ProgressEvent, StepFinished, format_duration
from evaluation.protocol import ProbeConfig, fold_rotation
from evaluation.scores import get_score
from evaluation.taskfolder import TaskFolder, check_clip
from hear_atst.atomic import scratch_dir

TYPICAL_STOP_SHARE = 0.5  # share of (max_epochs - earliest stop) a head trains past its earliest stop
CALIBRATION_CLIP_SECONDS = 10.0  # longest noise clip the embedding calibration runs
CALIBRATION_SECONDS = 1.0  # time the calls until this much has passed (or three calls)
SLOW_RUN_SECONDS = 3600.0  # a CPU estimate above this names the faster options
VALIDATION_ROWS = 4096  # rows of the timed validation forward pass (scaled to the split's rows)
CALIBRATION_CLIPS = 20  # most clips whose files are timed


# ------------------------------------------------------------------------------------------------ arithmetic


def earliest_stop(max_epochs: int, check_every: int, patience: int) -> int:
    """The fewest epochs one head trains: its first check best, then ``patience`` checks without improvement."""
    return min(max_epochs, check_every * (patience + 1))


def head_epochs(max_epochs: int, check_every: int, patience: int) -> tuple[float, int]:
    """(expected, at most) epochs one head trains: see the module docstring."""
    earliest = earliest_stop(max_epochs, check_every, patience)
    return earliest + TYPICAL_STOP_SHARE * (max_epochs - earliest), max_epochs


@dataclass(frozen=True)
class BankWork:
    """Heads trained together under one schedule, with the measured cost of one head's epoch and check."""

    heads: float  # fractional for the retraining (a mean over the grid points)
    max_epochs: int
    check_every: int
    patience: int
    epoch_seconds: float  # one head, one epoch of training steps
    check_seconds: float  # one head, one validation (forward pass and scoring)

    @property
    def head_epoch_seconds(self) -> float:
        return self.epoch_seconds + self.check_seconds / self.check_every

    def seconds(self) -> tuple[float, float]:
        """(expected, at most) seconds for every head of the bank."""
        expected, at_most = head_epochs(self.max_epochs, self.check_every, self.patience)
        return self.heads * expected * self.head_epoch_seconds, self.heads * at_most * self.head_epoch_seconds

    def least_seconds(self) -> float:
        """Seconds for every head of the bank when each stops at its earliest."""
        return self.heads * earliest_stop(self.max_epochs, self.check_every, self.patience) * self.head_epoch_seconds


@dataclass(frozen=True)
class ProbeEstimate:
    protocol: str
    rows: dict[str, int]  # per split
    dims: int
    train_rows: int  # the first fold's training rows
    grid_points: int
    folds: int
    seeds: int
    grid: tuple[BankWork, ...]  # one seed's grid phase
    retrain: tuple[BankWork, ...]  # one seed's retraining on the other folds

    def seconds(self) -> tuple[float, float]:
        parts = [bank.seconds() for bank in (*self.grid, *self.retrain)]
        return self.seeds * sum(p[0] for p in parts), self.seeds * sum(p[1] for p in parts)

    def least_seconds(self) -> float:
        """Seconds when every head stops at its earliest: no run of these banks takes less (calibration aside)."""
        return self.seeds * sum(bank.least_seconds() for bank in (*self.grid, *self.retrain))


@dataclass(frozen=True)
class FileCosts:
    """Seconds of the embedding stage's file work, timed by the stage's own functions (:func:`calibrate_files`)."""

    read: float = 0.0  # a clip's audio checked, then read, decoded and hashed to be embedded
    write: float = 0.0  # a clip's files, each written atomically (fsync of the file and of its folder)
    collect: float = 0.0  # a clip's share of its split's arrays (read back and written into them)
    record: float = 0.0  # a batch's audio records appended to the manifest (fsynced)
    split: float = 0.0  # a split's own files of its arrays (memmap, dimensions, labels, timestamps)
    folder: float = 0.0  # once: the folder prepared (identity, config, the task's files) and closed

    def seconds(self, clips: int, batches: int, splits: int) -> float:
        return (self.folder + splits * self.split + batches * self.record
                + clips * (self.read + self.write + self.collect))


@dataclass(frozen=True)
class EmbedEstimate:
    clips: int
    audio_seconds: float
    rate: int | None  # the model's sample rate (None when cached: the model was not loaded)
    cached: bool
    load_seconds: float = 0.0
    audio_per_second: float | None = None  # the model's calibrated throughput (seconds of audio per second)
    batches: int = 0  # the model's calls (clips of equal length, up to 80 s of audio each)
    splits: int = 0
    files: FileCosts = FileCosts()
    resampled: bool = False  # the task has no folder at the model's rate: it is resampled first (not estimated)

    def file_seconds(self) -> float:
        return self.files.seconds(self.clips, self.batches, self.splits)

    def seconds(self) -> float:
        if self.cached or not self.audio_per_second:
            return 0.0
        return self.load_seconds + self.audio_seconds / self.audio_per_second + self.file_seconds()


@dataclass(frozen=True)
class RunEstimate:
    task: str
    model_id: str
    device: str  # named: "cpu (AMD EPYC ..., 2 threads)" or "cuda (NVIDIA H100 ...)"
    on_cpu: bool
    embed: EmbedEstimate
    probe: ProbeEstimate
    faster: tuple[str, ...] = ()  # options that would make this run faster and are not in use

    def seconds(self) -> tuple[float, float]:
        """(expected, at most) seconds of the whole run."""
        probe = self.probe.seconds()
        return self.embed.seconds() + probe[0], self.embed.seconds() + probe[1]

    def lines(self) -> list[str]:
        """The plan as printed by ``eval --dry-run`` and at the start of a run."""
        embed, probe = self.embed, self.probe
        out = [f"plan: {self.model_id} on {self.task}, device {self.device}"]
        audio = format_duration(embed.audio_seconds)
        if embed.cached:
            out.append(f"  embed: {embed.clips} clips, {audio} of audio: cached")
        else:
            files = embed.files
            out.append(f"  embed: {embed.clips} clips, {audio} of audio at {embed.rate} Hz: ~"
                       f"{format_duration(embed.seconds())} (the model: {embed.audio_per_second:.1f} s of audio per "
                       f"second, loading it {embed.load_seconds:.1f} s; the files: {embed.file_seconds():.1f} s, a "
                       f"clip read {1000 * files.read:.1f} ms, written {1000 * files.write:.1f} ms, collected "
                       f"{1000 * files.collect:.1f} ms)"
                       + ("; the audio is resampled to that rate first (not estimated)" if embed.resampled else ""))
        rows = ", ".join(f"{split} {n}" for split, n in probe.rows.items())
        others = f", then the chosen one on {probe.folds - 1} other fold(s)" if probe.folds > 1 else ""
        out.append(f"  probe: {probe.protocol} protocol, {probe.grid_points} grid point(s) on the first fold{others}, "
                   f"{probe.seeds} seed(s); rows x dims {sum(probe.rows.values())} x {probe.dims} ({rows}; the first "
                   f"fold trains on {probe.train_rows})")
        expected, at_most = probe.seconds()
        least = probe.least_seconds()
        earliest = f"at least {format_duration(least)} if every head stops at its earliest, " \
            if least < expected else ""
        out.append(f"  probe: ~{format_duration(expected)} ({earliest}at most {format_duration(at_most)} if no head "
                   "stops early)")
        total, total_most = self.seconds()
        out.append(f"  total: ~{format_duration(total)} (at most {format_duration(total_most)})")
        if self.on_cpu and total > SLOW_RUN_SECONDS:
            out.append(f"  note: over an hour on the CPU; faster, if the numbers they give suit you: "
                       f"{', '.join(self.faster)}. Nothing is changed unless you ask.")
        return out


def faster_options(config: ProbeConfig, setup: ModelSetup) -> tuple[str, ...]:
    """The options that would make a run faster and are not in use already."""
    options = []
    if not setup.device.startswith("cuda"):
        available = torch.cuda.is_available()
        options.append("--device cuda" + ("" if available else " (on a machine with an NVIDIA GPU)"))
    if config.precision == "fp32":
        options.append("--probe-precision bf16")
    if setup.precision == "fp32":
        options.append("--precision bf16 (the model)")
    if config.protocol == "hear":
        options.append("--protocol linear")
        if config.grid == "default":
            options.append("--grid fast / --grid faster")
        if config.grid_points > 1:
            options.append(f"--grid-points N (fewer than {config.grid_points})")
    return tuple(options)


# ------------------------------------------------------------------------------------------------ calibration


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call: Callable[[], Any], device: torch.device, warmup: int = 1, calls: int = 3,
           budget: float | None = None) -> float:
    """Seconds per call: ``warmup`` untimed calls, then up to ``calls`` timed ones (fewer once ``budget`` seconds
    have passed); the median, so that one call slowed by another process does not count for all."""
    for _ in range(warmup):
        call()
    _sync(device)
    times: list[float] = []
    while len(times) < calls and (budget is None or sum(times) < budget):
        start = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@dataclass(frozen=True)
class ModelCalibration:
    load_seconds: float
    rate: int
    audio_per_second: float
    dims: int
    frames_per_second: float | None  # event tasks: timestamps per second of audio


def calibrate_model(setup: ModelSetup, clip_seconds: float, event: bool) -> ModelCalibration:
    """Load the model (timed) and time it on noise clips of ``clip_seconds`` (at most 10 s each), on about one
    second of audio first, then on batches twice as large until a call takes half a second or the batch is the
    run's own (up to 80 s of audio)."""
    start = time.perf_counter()
    module, model = setup.load()
    load_seconds = time.perf_counter() - start
    rate = int(model.sample_rate)
    device = torch.device(setup.device)
    length = max(1, round(min(clip_seconds, CALIBRATION_CLIP_SECONDS) * rate))
    run_batch = max(1, int(DEFAULT_BATCH_SECONDS * rate // length))
    noise = torch.Generator().manual_seed(0)

    outputs: list[Any] = []

    def seconds_per_call(batch: int, warmup: int, calls: int) -> float:
        audio = (0.1 * torch.randn(batch, length, generator=noise)).to(device)

        def call() -> None:
            with torch.inference_mode():
                outputs[:] = [module.get_timestamp_embeddings(audio, model)[0] if event
                              else module.get_scene_embeddings(audio, model)]

        return _timed(call, device, warmup=warmup, calls=calls, budget=CALIBRATION_SECONDS)

    batch = max(1, min(run_batch, round(rate / length)))  # about one second of audio
    seconds = seconds_per_call(batch, warmup=1, calls=1)
    while seconds < CALIBRATION_SECONDS / 2 and batch < run_batch:  # per-call costs fade as the run's batch nears
        batch = min(run_batch, 2 * batch)
        seconds = seconds_per_call(batch, warmup=0, calls=1 if batch < run_batch else 3)
    audio_per_second, embedding = batch * length / rate / seconds, outputs[0]
    frames = embedding.shape[1] / (length / rate) if event else None
    return ModelCalibration(load_seconds, rate, audio_per_second, int(embedding.shape[-1]), frames)


def frame_count(frames_per_second: float, seconds: float) -> int:
    """Timestamps an event model gives a clip of ``seconds``."""
    return max(1, round(frames_per_second * seconds))


def _noise_embedding(random: np.random.Generator, seconds: float, dims: int, frames_per_second: float | None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """A clip's embedding of the calibrated size (and, for event tasks, its timestamps in ms)."""
    if frames_per_second is None:
        return random.standard_normal(dims, dtype=np.float32), None
    n = frame_count(frames_per_second, seconds)
    return random.standard_normal((n, dims), dtype=np.float32), (np.arange(n) + 0.5) * 1000.0 / frames_per_second


def _seconds(call: Callable[[], Any]) -> float:
    """Seconds one call of ``call`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def calibrate_files(setup: ModelSetup, folder: TaskFolder, lengths: dict[str, dict[str, int]], rate: int,
                    dims: int, frames_per_second: float | None, out_dir: Path) -> FileCosts:
    """Time the embedding stage's file work with its own functions, in a scratch folder on the file system of
    ``out_dir`` (removed after; nothing is written elsewhere). ``lengths``: per split, each clip's samples at
    ``rate``. The folder is prepared; then, clip by clip of the first split (up to 20, fewer once half a second
    has passed), the clip's audio is checked and read with its hash (at ``rate`` if that folder exists, else an
    original rate) and its files are written (noise embeddings of the calibrated size, the clip's real labels);
    their manifest records are appended once; the split's arrays are collected from the first clip alone (the
    split's own files), then from all (the difference is the clips' share; three times each, the medians); the
    folder is closed. The clips' reads and writes are means, not medians: the run pays every slow ``fsync`` too."""
    audio_rate = rate if (folder.path / str(rate)).is_dir() else (folder.original_rates() or folder.sample_rates())[0]
    split = next(split for split in folder.splits if folder.labels[split])
    event = frames_per_second is not None
    random = np.random.default_rng(0)
    reads: list[float] = []
    writes: list[float] = []
    records: dict[str, ClipRecord] = {}
    written: list[str] = []
    with scratch_dir(out_dir) as scratch:
        target = scratch / folder.name
        opening = _seconds(lambda: prepare_folder(target, folder, folder_config(setup, setup.identity(folder), rate)))
        for name in sorted(folder.labels[split])[:CALIBRATION_CLIPS]:
            path = folder.path / str(audio_rate) / split / name
            start = time.perf_counter()
            check_clip(path, audio_rate, [])
            _, records[f"{split}/{name}"] = read_clip(path)
            reads.append(time.perf_counter() - start)
            embedding, timestamps = _noise_embedding(random, lengths[split][name] / rate, dims, frames_per_second)
            writes.append(_seconds(functools.partial(write_clip, target / split, name, embedding, timestamps,
                                                     folder.labels[split][name])))
            written.append(name)
            if sum(reads) + sum(writes) > CALIBRATION_SECONDS / 2:
                break
        record = _seconds(lambda: append_records(target, records))
        cpu = torch.device("cpu")  # the split's files are written alike both times: medians of three each
        split_files = _timed(lambda: write_split_arrays(target, split, written[:1], event), cpu, warmup=0)
        collect_all = _timed(lambda: write_split_arrays(target, split, written, event), cpu, warmup=0)
        closing = _seconds(lambda: close_folder(target, folder, lengths, rate, setup, 0.0))
    collect = max(0.0, collect_all - split_files) / (len(written) - 1) if len(written) > 1 else 0.0  # noise: >= 0
    return FileCosts(read=float(np.mean(reads)), write=float(np.mean(writes)), collect=collect, record=record,
                     split=split_files, folder=opening + closing)


def bank_seconds(heads: Sequence[HeadConfig], batch_size: int, dims: int, n_labels: int, n_train: int,
                 n_valid: int, multilabel: bool, device: str, precision: str, separate: bool = False
                 ) -> tuple[float, float]:
    """(one head's epoch of training, one head's validation pass without scoring) for a bank of ``heads``, timed on
    the real training loop (:func:`train_heads`) over random rows: at most two batches of training rows and 4096
    validation rows, three epochs each validated, the first left out; scaled to ``n_train`` and ``n_valid`` rows.
    ``separate``: every head on its own rows (the retraining of one point on several folds)."""
    rows_t, rows_v = min(n_train, 2 * batch_size), max(1, min(n_valid, VALIDATION_ROWS))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows_t + rows_v, dims, generator=generator)
    labels = torch.randint(n_labels, (rows_t + rows_v,), generator=generator)
    y = torch.nn.functional.one_hot(labels, n_labels).float()
    if multilabel:
        y = torch.maximum(y, (torch.rand(y.shape, generator=generator) < 0.1).float())
    train, valid = np.arange(rows_t), np.arange(rows_t, rows_t + rows_v)
    members = [Member(config=head, init_seed=i, shuffle_seed=i if separate else 0, train_rows=train,
                      valid_rows=np.roll(valid, i) if separate else valid, validate=lambda p, lg: (0.5, None),
                      data_key=str(i) if separate else "") for i, head in enumerate(heads)]
    schedule = Schedule(max_epochs=3, check_every=1, patience=10**6, batch_size=batch_size)
    marks: list[tuple[str, float]] = []
    sync_device = torch.device(device)

    def record(event: ProgressEvent) -> None:
        if isinstance(event, BankStarted | StepFinished | EpochFinished):
            _sync(sync_device)
            marks.append((type(event).__name__, time.perf_counter()))

    train_heads(members, x.to(device), y.to(device), schedule, multilabel, precision, record)
    trains, checks = [], []
    epoch_start = marks[0][1]
    for (kind, at), (_, before) in zip(marks[1:], marks[:-1], strict=True):
        if kind == "EpochFinished":
            trains.append(before - epoch_start)
            checks.append(at - before)
            epoch_start = at
    steps, timed_steps = math.ceil(n_train / batch_size), math.ceil(rows_t / batch_size)
    train_seconds, check_seconds = float(np.mean(trains[1:])), float(np.mean(checks[1:]))
    return train_seconds * steps / timed_steps / len(heads), check_seconds * n_valid / rows_v / len(heads)


def scoring_seconds(folder: TaskFolder, valid_splits: Sequence[str], rows: dict[str, int]) -> float:
    """Seconds of one validation scoring of one head with the task's primary score (what a check adds)."""
    metadata = folder.metadata
    if not metadata.get("use_scoring_for_early_stopping", True):
        return 0.0
    labels = [str(label) for label in folder.label_vocabulary]
    index = {label: i for i, label in enumerate(labels)}
    score = get_score(str(metadata["evaluation"][0]))
    random = np.random.default_rng(0)
    if folder.embedding_type == "scene":
        n = sum(rows[split] for split in valid_splits)
        targets = np.eye(len(labels))[random.integers(len(labels), size=n)]
        probabilities = 0.7 * targets + 0.3 * random.random(targets.shape)
        return _timed(lambda: score.scene(probabilities, targets), torch.device("cpu"), calls=1)
    names, times, reference = [], [], {}
    for split in valid_splits:
        clips = folder.labels[split]
        frames = max(1, rows[split] // max(1, len(clips)))
        duration_ms = 1000.0 * float(metadata.get("sample_duration") or 10.0)
        for name, events in clips.items():
            names += [name] * frames
            times.append((np.arange(frames) + 0.5) * duration_ms / frames)
            reference[name] = [{**event, "label": str(event["label"])} for event in events]
    timestamps = np.concatenate(times)
    targets = np.zeros((len(names), len(labels)))
    start = 0
    for name, clip_times in zip(dict.fromkeys(names), times, strict=True):
        for row, frame in enumerate(frame_labels(reference[name], clip_times)):
            targets[start + row, [index[label] for label in frame]] = 1.0
        start += len(clip_times)
    probabilities = 0.8 * targets + 0.3 * random.random(targets.shape)  # near the reference, with stray frames
    layout = FrameLayout.from_rows(names, timestamps)
    settings = postprocessing_settings(metadata)
    return _timed(lambda: select_postprocessing(layout, probabilities, reference, labels, settings, score),
                  torch.device("cpu"), warmup=0, calls=1)


def run_heads(config: ProbeConfig, metadata: dict[str, Any], n_train: int
              ) -> tuple[list[HeadConfig], list[Schedule]]:
    """The heads the run's probe trains and their schedules under the run's settings (none for a probe that
    trains no heads, e.g. kNN: its time is not estimated)."""
    context = ProbeContext(x=torch.empty(0), y=torch.empty(0), multilabel=False, maximize=True, config=config,
                           metadata=metadata, validator=lambda fold: lambda p, lg: (0.0, None))
    probe = config.probe(context)
    if not isinstance(probe, TrainedHeadsProbe):
        return [], []
    _, heads, schedules = probe.heads(n_train)
    return heads, [probe.run_schedule(schedule) for schedule in schedules]


def calibrate_probe(config: ProbeConfig, folder: TaskFolder, rows: dict[str, int], dims: int) -> ProbeEstimate:
    """Time the banks of one seed's grid and retraining at the task's sizes (see the module docstring)."""
    metadata = folder.metadata
    rotation = fold_rotation(metadata)
    train_rows = sum(rows[split] for split in rotation[0]["train"])
    valid_rows = sum(rows[split] for split in rotation[0]["valid"])
    n_labels, multilabel = len(folder.label_vocabulary), metadata["prediction_type"] == "multilabel"
    heads, schedules = run_heads(config, metadata, train_rows)
    score_seconds = scoring_seconds(folder, rotation[0]["valid"], rows)
    groups: dict[tuple[Schedule, Any], list[int]] = {}
    for index, (head, schedule) in enumerate(zip(heads, schedules, strict=True)):
        groups.setdefault((schedule, head.family), []).append(index)
    per_point: dict[int, tuple[float, float]] = {}  # grid point -> (epoch seconds, check seconds) of one head
    measure = functools.partial(bank_seconds, dims=dims, n_labels=n_labels, n_train=train_rows, n_valid=valid_rows,
                                multilabel=multilabel, device=config.device, precision=config.precision)
    grid = []
    for (schedule, _), indices in groups.items():
        epoch, check = measure([heads[i] for i in indices], schedule.batch_size)
        per_point.update({i: (epoch, check + score_seconds) for i in indices})
        grid.append(BankWork(len(indices), schedule.max_epochs, schedule.check_every, schedule.patience, epoch,
                             check + score_seconds))
    others = len(rotation) - 1
    retrain: tuple[BankWork, ...] = ()
    if others and heads:  # one bank of the chosen point on every other fold (the linear probe: one fold at a time)
        together: dict[Any, tuple[float, float]] = {}
        for i, head in enumerate(heads):
            if config.protocol != "linear" and head.family not in together:
                together[head.family] = measure([head] * others, schedules[i].batch_size, separate=True)
        costs = {i: (together[heads[i].family][0], together[heads[i].family][1] + score_seconds)
                 if heads[i].family in together else per_point[i] for i in range(len(heads))}
        retrain = tuple(BankWork(others / len(heads), schedules[i].max_epochs, schedules[i].check_every,
                                 schedules[i].patience, *costs[i]) for i in range(len(heads)))
    return ProbeEstimate(protocol=config.protocol, rows=rows, dims=dims, train_rows=train_rows,
                         grid_points=len(heads), folds=len(rotation), seeds=len(config.seeds), grid=tuple(grid),
                         retrain=retrain)


# ------------------------------------------------------------------------------------------------ the run


def clip_seconds(folder: TaskFolder) -> dict[str, dict[str, float]]:
    """Per split, each clip's duration: the metadata's ``sample_duration`` (hear-preprocess cuts or pads every clip
    to it), else read from the audio files' headers."""
    duration = folder.metadata.get("sample_duration")
    if duration:
        return {split: dict.fromkeys(folder.labels[split], float(duration)) for split in folder.splits}
    rate = (folder.original_rates() or folder.sample_rates())[0]
    return {split: {name: soundfile.info(str(folder.path / str(rate) / split / name)).duration
                    for name in folder.labels[split]} for split in folder.splits}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def _cached_rows(out_dir: Path, splits: Sequence[str]) -> tuple[dict[str, int], int]:
    """Rows per split and the dimensions of a complete embedding cache (its ``embedding-dimensions`` files)."""
    dims = {split: json.loads((out_dir / f"{split}.embedding-dimensions.json").read_text(encoding="utf-8"))
            for split in splits}
    return {split: int(d[0]) for split, d in dims.items()}, int(next(iter(dims.values()))[1])


def estimate_run(setup: ModelSetup, folder: TaskFolder, embeddings_dir: str | os.PathLike[str], config: ProbeConfig
                 ) -> RunEstimate:
    """The plan and the calibrated time of ``run_eval(setup, folder, ...)``; reads the task folder (a few clips'
    audio, the headers of the others at most) and the embedding cache, loads and runs the model on noise, and
    times the embedding files' writing in a scratch folder it removes: leaves nothing behind."""
    durations = clip_seconds(folder)
    clips = sum(len(d) for d in durations.values())
    audio = sum(sum(d.values()) for d in durations.values())
    out_dir = task_embeddings_dir(embeddings_dir, setup, folder)
    if is_complete(out_dir):
        rows, dims = _cached_rows(out_dir, folder.splits)
        embed = EmbedEstimate(clips=clips, audio_seconds=audio, rate=None, cached=True)
    else:
        event = folder.embedding_type == "event"
        calibration = calibrate_model(setup, max(max(d.values()) for d in durations.values()), event)
        dims, fps, rate = calibration.dims, calibration.frames_per_second, calibration.rate
        rows = {split: sum(frame_count(fps, s) for s in d.values()) if fps is not None else len(d)
                for split, d in durations.items()}
        lengths = {split: {name: max(1, round(s * rate)) for name, s in d.items()} for split, d in durations.items()}
        embed = EmbedEstimate(clips=clips, audio_seconds=audio, rate=rate, cached=False,
                              load_seconds=calibration.load_seconds, audio_per_second=calibration.audio_per_second,
                              batches=len(plan_batches(lengths, folder.splits, rate, DEFAULT_BATCH_SECONDS)),
                              splits=len(folder.splits),
                              files=calibrate_files(setup, folder, lengths, rate, dims, fps, out_dir),
                              resampled=rate not in folder.sample_rates())
    probe = calibrate_probe(config, folder, rows, dims)
    return RunEstimate(task=folder.name, model_id=setup.model_id, device=device_name(config.device),
                       on_cpu=not config.device.startswith("cuda"), embed=embed, probe=probe,
                       faster=faster_options(config, setup))
