"""The probe stage: ``evaluate(task, config)`` trains probes on a task's embeddings and scores them.

Folds (hear-eval-kit §3.5): ``trainvaltest`` is one split (train/valid/test); k-fold tasks rotate the sorted
folds, test = fold i, valid = fold (i+1) mod k, train = the rest (in sorted order). With the ``hear``
protocol the kit's grid (:mod:`evaluation.probes.grid`) is trained on fold 0 only, all grid points with the same
schedule together (the ``default`` grid has one schedule; ``fast`` and ``faster`` vary max epochs, validation
interval and patience, and each schedule gets its own bank); the best point by validation score over the whole
grid (stable sort, so ties keep grid order) is retrained on every other fold, all
folds together; each fold is tested with its own best checkpoint and, for event tasks, the post-processing
setting chosen at that checkpoint's validation. The ``linear`` protocol trains EVAR's linear probe the same
way (a grid of one). Each seed repeats everything with its own initialisation, batch order and dropout.

Summary statistics (``TaskResult.score``/``scores``): over every (fold, seed) test value — ``n = folds x
seeds`` — the mean, the sample std (ddof=1) and a 95 % Student-t interval ``mean ± t(0.975, n-1) std/sqrt(n)``
(NaN for n = 1). The interval therefore mixes fold-to-fold and seed-to-seed variation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from evaluation.data import TaskEmbeddings
from evaluation.events import FrameLayout, postprocessing_settings, select_postprocessing
from evaluation.probes.grid import sample_grid
from evaluation.probes.linear import linear_head, linear_schedule, standardize
from evaluation.probes.mlp import HeadConfig, compute_dtype, predict
from evaluation.probes.train import Member, Schedule, Trained, train_heads
from evaluation.progress import PhaseFinished, PhaseStarted, ProbeFinished, ProbePlan, ProgressCallback
from evaluation.results import FoldEvents
from evaluation.scores import EventMap, get_score, psds

PSDS_THRESHOLDS = np.arange(1 / 100, 1, 1 / 50)  # 50 operating points 0.01 .. 0.99 (DCASE task 4 baseline)


@dataclass
class ProbeConfig:
    """How to probe. ``shuffle=False`` reproduces the kit's never-shuffled training batches and
    ``stop_on_non_finite=True`` its early stop at a NaN or infinite validation score (both off by default)."""

    protocol: str = "hear"  # "hear" | "linear"
    seeds: list[int] = field(default_factory=lambda: [0])
    shuffle: bool = True
    stop_on_non_finite: bool = False
    grid_points: int = 8
    grid: str = "default"  # the kit's "default" | "fast" | "faster"
    device: str = "cpu"
    event_backend: str = "fast"  # "fast" | "sed_eval" (identical numbers; sed_eval is the slow reference)
    psds: bool = True  # add PSDS (scenario 1) for event tasks at test time
    linear_lr: float = 3e-4
    linear_weight_decay: float = 1e-8
    max_epochs: int | None = None  # cap for smoke runs only; None keeps the protocol's value
    precision: str = "fp32"  # probe GEMMs: "fp32" | "bf16" (float32 master weights, Adam state and BatchNorm)

    def __post_init__(self) -> None:
        if self.protocol not in ("hear", "linear"):
            raise ValueError(f"protocol must be 'hear' or 'linear', got {self.protocol!r}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.protocol == "linear" and (not self.shuffle or self.stop_on_non_finite):
            raise ValueError("shuffle=False and stop_on_non_finite=True reproduce the HEAR kit's training; the linear "
                             "protocol follows EVAR, which shuffles and has no such stop")
        if not self.linear_lr > 0 or self.linear_weight_decay < 0:
            raise ValueError(f"linear_lr must be > 0 and linear_weight_decay >= 0, got {self.linear_lr!r}, "
                             f"{self.linear_weight_decay!r}")
        compute_dtype(self.precision)  # raises ValueError on an unknown precision

    @property
    def run_name(self) -> str:
        """The results sub-folder of this probe: the protocol plus every setting that changes its numbers and
        differs from the default (e.g. ``hear``, ``linear``, ``hear-grid=fast-precision=bf16``), so runs of two
        protocols or settings never overwrite each other. Seeds are not part of it: a rerun replaces a run."""
        default = ProbeConfig()
        parts = [self.protocol]
        if self.protocol == "hear":
            parts += [f"grid={self.grid}"] * (self.grid != default.grid)
            parts += [f"points={self.grid_points}"] * (self.grid_points != default.grid_points)
        else:
            parts += [f"lr={self.linear_lr:g}"] * (self.linear_lr != default.linear_lr)
            parts += [f"wd={self.linear_weight_decay:g}"] * (self.linear_weight_decay != default.linear_weight_decay)
        parts += ["kit-order"] * (not self.shuffle)
        parts += ["stop-non-finite"] * self.stop_on_non_finite
        parts += [f"precision={self.precision}"] * (self.precision != default.precision)
        parts += [f"max-epochs={self.max_epochs}"] * (self.max_epochs is not None)
        return "-".join(parts)


@dataclass
class TaskResult:
    """Everything ``results.json`` needs under protocol/primary_score/higher_is_better/score/scores/runs."""

    task_name: str
    protocol: dict[str, Any]
    primary_score: str
    higher_is_better: bool
    score: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    runs: list[dict[str, Any]]
    predicted_scores: list[dict[str, Any]]  # the kit's test.predicted-scores.json, one per seed
    probe_seconds: float
    events: FoldEvents | None = None  # event tasks: the first seed's first fold's test events (test.events.json)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in
                ("protocol", "primary_score", "higher_is_better", "score", "scores", "runs")}

    def to_predicted_scores(self, seed_index: int = 0) -> dict[str, Any]:
        """The kit's ``test.predicted-scores.json`` dict for one seed (the runner adds ``embedding_path``)."""
        return self.predicted_scores[seed_index]


# ------------------------------------------------------------------------------------------------ inputs


def _check_epoch_cap(max_epochs: int, check_every: int) -> None:
    if max_epochs < check_every:
        raise ValueError(f"max_epochs={max_epochs} is below this grid point's validation interval ({check_every} "
                         f"epochs): no validation would run; cap at {check_every} or more")


def check_probe_settings(config: ProbeConfig, metadata: dict[str, Any]) -> None:
    """Refuse, before anything is embedded, an epoch cap below the validation interval of a grid point this run
    would sample (the linear protocol validates every epoch)."""
    if config.max_epochs is not None and config.protocol == "hear":
        for point in sample_grid(metadata, config.grid_points, config.grid):
            _check_epoch_cap(config.max_epochs, point["check_val_every_n_epoch"])


def candidates(config: ProbeConfig, metadata: dict[str, Any], n_train: int, maximize: bool
               ) -> tuple[list[dict[str, Any]], list[HeadConfig], list[Schedule]]:
    """The grid points: hyper-parameters, heads and each head's schedule under this run's settings (the kit's
    fast/faster grids vary ``max_epochs``, ``check_val_every_n_epoch`` and ``patience`` between points)."""
    if config.protocol == "linear":
        head = linear_head(config.linear_lr, config.linear_weight_decay)
        schedule = linear_schedule(n_train, maximize)
        hparams = [{"protocol": "linear", "lr": head.lr, "weight_decay": head.weight_decay,
                    "batch_size": schedule.batch_size, "max_epochs": schedule.max_epochs,
                    "patience": schedule.patience}]
        return hparams, [head], [_with_run_settings(config, schedule)]
    hparams = sample_grid(metadata, config.grid_points, config.grid)
    heads = [HeadConfig(hidden_layers=h["hidden_layers"], hidden_dim=h["hidden_dim"], dropout=h["dropout"],
                        lr=h["lr"], initialization=h["initialization"], hidden_norm=h["hidden_norm"])
             for h in hparams]
    schedules = [_with_run_settings(config, Schedule(h["max_epochs"], h["check_val_every_n_epoch"], h["patience"],
                                                     h["batch_size"], maximize=maximize)) for h in hparams]
    return hparams, heads, schedules


def _with_run_settings(config: ProbeConfig, schedule: Schedule) -> Schedule:
    """A grid point's ``schedule`` under this run's settings: batch order, the kit's stop on non-finite values,
    and ``max_epochs`` capped by ``ProbeConfig.max_epochs`` (smoke runs)."""
    schedule = dataclasses.replace(schedule, shuffle=config.shuffle, stop_on_non_finite=config.stop_on_non_finite)
    if config.max_epochs is None:
        return schedule
    _check_epoch_cap(config.max_epochs, schedule.check_every)
    return dataclasses.replace(schedule, max_epochs=min(schedule.max_epochs, config.max_epochs))


def fold_rotation(metadata: dict[str, Any]) -> list[dict[str, list[str]]]:
    """The kit's data splits: one train/valid/test split, or test=i, valid=i+1, train=rest over sorted folds."""
    mode = metadata.get("split_mode")
    if mode == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    if mode not in ("presplit_kfold", "new_split_kfold"):
        raise ValueError(f"unknown split_mode {mode!r} in task metadata")
    folds = sorted(metadata["splits"])
    if len(folds) < 3:
        raise ValueError(f"k-fold rotation needs at least 3 folds, got {folds}")
    rotation = []
    for i, test in enumerate(folds):
        valid = folds[(i + 1) % len(folds)]
        rotation.append({"train": [f for f in folds if f not in (test, valid)], "valid": [valid], "test": [test]})
    return rotation


def _check_task(task: TaskEmbeddings) -> None:
    metadata = task.metadata
    for key in ("task_name", "embedding_type", "prediction_type", "split_mode", "splits", "evaluation"):
        if key not in metadata:
            raise ValueError(f"task metadata has no {key!r}")
    vocabulary = {str(label) for label in task.label_vocabulary}
    dims = set()
    for name in task.split_names:
        if name not in task.splits:
            raise ValueError(f"task {task.task_name}: split {name} is listed in the metadata but has no embeddings")
        split = task.splits[name]
        if split.embeddings.shape[0] == 0:
            raise ValueError(f"task {task.task_name}: split {name} is empty")
        if not np.isfinite(split.embeddings).all():
            raise ValueError(f"task {task.task_name}: split {name} has NaN or infinite embedding values")
        dims.add(split.embeddings.shape[1])
        for row, labels in enumerate(split.labels):
            unknown = [label for label in labels if str(label) not in vocabulary]
            if unknown:
                raise ValueError(f"task {task.task_name}: split {name} row {row} has labels {unknown} "
                                 "outside the label vocabulary")
            if task.prediction_type == "multiclass" and len(labels) != 1:
                raise ValueError(f"task {task.task_name}: split {name} row {row} has {len(labels)} labels; "
                                 "multiclass rows need exactly one")
        if task.embedding_type == "event" and split.timestamps is None:
            raise ValueError(f"task {task.task_name}: event split {name} has no timestamps")
    if len(dims) != 1:
        raise ValueError(f"task {task.task_name}: splits have different embedding sizes {sorted(dims)}")


@dataclass
class _Data:
    """All splits stacked once on the device, and where each split's rows are."""

    x: torch.Tensor
    y: torch.Tensor
    offsets: dict[str, np.ndarray]

    def rows(self, names: Sequence[str]) -> np.ndarray:
        return np.concatenate([self.offsets[name] for name in names])


def _stack(task: TaskEmbeddings, device: str) -> _Data:
    index = {str(label): i for i, label in enumerate(task.label_vocabulary)}
    xs, ys, offsets, start = [], [], {}, 0
    for name in task.split_names:
        split = task.splits[name]
        n = split.embeddings.shape[0]
        y = np.zeros((n, len(index)), dtype=np.float32)
        for row, labels in enumerate(split.labels):
            y[row, [index[str(label)] for label in labels]] = 1.0
        xs.append(np.asarray(split.embeddings, dtype=np.float32))
        ys.append(y)
        offsets[name] = np.arange(start, start + n)
        start += n
    return _Data(torch.from_numpy(np.concatenate(xs)).to(device), torch.from_numpy(np.concatenate(ys)).to(device),
                 offsets)


# ------------------------------------------------------------------------------------------------ evaluation


class _Fold:
    """One rotation entry: rows, targets, and for event tasks the frame layout and reference events."""

    def __init__(self, task: TaskEmbeddings, data: _Data, index: int, splits: dict[str, list[str]]):
        self.task, self.index, self.splits = task, index, splits
        self.name = "|".join(splits["test"])
        self.train_rows, self.valid_rows, self.test_rows = (data.rows(splits[k]) for k in ("train", "valid", "test"))
        self.y = data.y.cpu().numpy()
        self.layouts = {k: self._layout(splits[k]) for k in ("valid", "test")} if self._event else {}
        self.references = {k: self._reference(splits[k]) for k in ("valid", "test")} if self._event else {}

    @property
    def _event(self) -> bool:
        return self.task.embedding_type == "event"

    def _layout(self, names: list[str]) -> FrameLayout:
        filenames = [f for name in names for f in self.task.splits[name].filenames]
        timestamps = np.concatenate([self.task.splits[name].timestamps for name in names])
        return FrameLayout.from_rows(filenames, timestamps)

    def _reference(self, names: list[str]) -> dict[str, list[dict]]:
        reference: dict[str, list[dict]] = {}
        for name in names:
            reference.update(self.task.events.get(name, {}))
        return reference


def _loss(logits: np.ndarray, targets: np.ndarray, multilabel: bool) -> float:
    logits_t, targets_t = torch.from_numpy(logits), torch.from_numpy(targets)
    if multilabel:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits_t, targets_t))
    return float(torch.nn.functional.cross_entropy(logits_t, targets_t.argmax(dim=1)))


class _Evaluator:
    def __init__(self, task: TaskEmbeddings, config: ProbeConfig, progress: ProgressCallback | None = None):
        _check_task(task)
        self.task, self.config, self.progress = task, config, progress
        self.metadata = task.metadata
        self.labels = [str(label) for label in task.label_vocabulary]
        self.multilabel = task.prediction_type == "multilabel"
        self.primary = get_score(task.primary_score)
        self.use_scoring = bool(self.metadata.get("use_scoring_for_early_stopping", True))
        self.maximize = self.primary.maximize if self.use_scoring else False
        self.settings = postprocessing_settings(self.metadata) if task.embedding_type == "event" else []
        if task.embedding_type == "event" and not self.use_scoring and len(self.settings) != 1:
            raise ValueError("without scoring for early stopping an event task needs exactly one post-processing")
        self.data = _stack(task, config.device)
        self.folds = [_Fold(task, self.data, i, s) for i, s in enumerate(fold_rotation(self.metadata))]

    # ---------------------------------------------------------------- heads and schedules

    def _candidates(self, n_train: int) -> tuple[list[dict[str, Any]], list[HeadConfig], list[Schedule]]:
        return candidates(self.config, self.metadata, n_train, self.maximize)

    def _validator(self, fold: _Fold):
        targets = fold.y[fold.valid_rows]
        if not self.use_scoring:
            setting = self.settings[0] if self.settings else None
            return lambda probs, logits: (_loss(logits, targets, self.multilabel), setting)
        if self.task.embedding_type == "scene":
            return lambda probs, logits: (self.primary.scene(probs, targets), None)
        layout, reference = fold.layouts["valid"], fold.references["valid"]

        def validate(probs: np.ndarray, logits: np.ndarray) -> tuple[float, Any]:
            setting, value = select_postprocessing(layout, probs, reference, self.labels, self.settings,
                                                   self.primary, self.config.event_backend)
            return value, setting

        return validate

    def _members(self, folds: Sequence[_Fold], heads: Sequence[tuple[int, HeadConfig]], seed: int) -> list[Member]:
        """One member per (fold, head), fold-major; a head's index (its grid position) is part of its init seed."""
        members = []
        for fold in folds:
            for index, head in heads:
                members.append(Member(
                    config=head, init_seed=seed * 1_000_003 + fold.index * 1009 + index,
                    shuffle_seed=seed * 1_000_003 + fold.index, train_rows=fold.train_rows,
                    valid_rows=fold.valid_rows, validate=self._validator(fold), data_key=fold.name,
                ))
        return members

    def _x_for(self, fold_rows: np.ndarray) -> torch.Tensor:
        return standardize(self.data.x, fold_rows) if self.config.protocol == "linear" else self.data.x

    def _train(self, folds: Sequence[_Fold], heads: Sequence[HeadConfig], schedules: Sequence[Schedule], seed: int
               ) -> list[Trained]:
        """Every (fold, head) trained, fold-major; heads with different schedules train in separate banks."""
        groups: dict[Schedule, list[int]] = {}
        for index, schedule in enumerate(schedules):
            groups.setdefault(schedule, []).append(index)
        trained: dict[tuple[int, int], Trained] = {}
        for schedule, indices in groups.items():
            results = self._train_bank(folds, [(i, heads[i]) for i in indices], schedule, seed)
            trained.update(zip([(f, i) for f in range(len(folds)) for i in indices], results, strict=True))
        return [trained[f, i] for f in range(len(folds)) for i in range(len(heads))]

    def _train_bank(self, folds: Sequence[_Fold], heads: Sequence[tuple[int, HeadConfig]], schedule: Schedule,
                    seed: int) -> list[Trained]:
        """Heads of one schedule on every fold, fold-major."""
        if self.config.protocol == "linear":  # standardisation differs per fold: one fold at a time
            return [t for fold in folds
                    for t in train_heads(self._members([fold], heads, seed), self._x_for(fold.train_rows),
                                         self.data.y, schedule, self.multilabel, self.config.precision,
                                         self.progress)]
        return train_heads(self._members(folds, heads, seed), self.data.x, self.data.y, schedule, self.multilabel,
                           self.config.precision, self.progress)

    # ---------------------------------------------------------------- test

    def _test(self, fold: _Fold, trained: Trained) -> tuple[dict[str, float], EventMap | None]:
        """The test scores of one fold's best checkpoint (the kit's keys) and, for event tasks, its events."""
        x = self._x_for(fold.train_rows)
        rows = torch.as_tensor(fold.test_rows, dtype=torch.long, device=x.device)
        probs_t, logits_t = predict([trained.state], x[rows], self.multilabel, self.config.precision)
        probs, logits = probs_t[0].cpu().numpy(), logits_t[0].cpu().numpy()
        targets = fold.y[fold.test_rows]
        out: dict[str, float] = {"test_loss": _loss(logits, targets, self.multilabel)}
        metrics: dict[str, float] = {}
        predicted = None
        if self.task.embedding_type == "scene":
            for name in self.metadata["evaluation"]:
                metrics[f"test_{name}"] = get_score(name).scene(probs, targets)
        else:
            layout, reference = fold.layouts["test"], fold.references["test"]
            predicted = layout.events(probs, self.labels, trained.extra)
            for name in self.metadata["evaluation"]:
                subscores = get_score(name).event(predicted, reference, self.labels, self.config.event_backend)
                metrics[f"test_{name}"] = next(iter(subscores.values()))
                metrics.update({f"test_{name}_{sub}": value for sub, value in subscores.items()})
            if self.config.psds:
                metrics["test_psds1"] = self._psds(layout, probs, reference, trained.extra)
        out["test_score"] = metrics[f"test_{self.primary.name}"]
        out.update(metrics)
        return out, predicted

    def _psds(self, layout: FrameLayout, probs: np.ndarray, reference: EventMap, setting: Any) -> float:
        points = [layout.events(probs, self.labels, setting, threshold=float(t)) for t in PSDS_THRESHOLDS]
        duration = self.metadata.get("sample_duration")
        durations = {}
        for name, times in zip(layout.files, layout.times, strict=True):
            ends = [e["end"] for e in reference.get(name, [])]
            durations[name] = float(duration) if duration else max([times[-1], *ends]) / 1000.0
        return psds(points, reference, durations, self.labels)

    # ---------------------------------------------------------------- one seed

    def plan(self) -> ProbePlan:
        """The work of :meth:`run_seed` for every seed, at most (the progress display's bound)."""
        _, _, schedules = self._candidates(len(self.folds[0].train_rows))
        return ProbePlan(task=self.task.task_name, protocol=self.config.protocol, seeds=tuple(self.config.seeds),
                         folds=tuple(fold.name for fold in self.folds), grid_points=len(schedules),
                         grid_head_epochs=sum(s.max_epochs for s in schedules),
                         retrain_head_epochs=(len(self.folds) - 1) * max(s.max_epochs for s in schedules))

    def _phase(self, seed: int, phase: str, folds: Sequence[_Fold], heads: Sequence[HeadConfig],
               schedules: Sequence[Schedule]) -> tuple[list[Trained], float]:
        """``_train`` announced to the progress callback; the trained heads and the seconds it took."""
        names = tuple(fold.name for fold in folds)
        if self.progress:
            self.progress(PhaseStarted(seed=seed, phase=phase, folds=names, heads=len(folds) * len(heads),
                                       head_epochs=len(folds) * sum(s.max_epochs for s in schedules)))
        start = time.time()
        trained = self._train(folds, heads, schedules, seed)
        return trained, time.time() - start

    def run_seed(self, seed: int) -> tuple[dict[str, Any], dict[str, Any], FoldEvents | None]:
        """One seed: (the results.json run, the kit's predicted-scores dict, the first fold's test events); the
        progress callback hears of the grid phase and of the retraining on the other folds."""
        first = self.folds[0]
        hparams, heads, schedules = self._candidates(len(first.train_rows))
        grid, grid_seconds = self._phase(seed, "grid", [first], heads, schedules)
        order = sorted(range(len(grid)), key=lambda i: grid[i].best_value, reverse=self.maximize)
        best = order[0]
        grid_minutes = grid_seconds / 60
        if self.progress:
            self.progress(PhaseFinished(seed=seed, phase="grid", folds=(first.name,), heads=len(grid),
                                        seconds=grid_seconds, chosen=best, best=grid[best].best_value))
        others, other_minutes = [], 0.0
        if len(self.folds) > 1:
            others, other_seconds = self._phase(seed, "retrain", self.folds[1:], [heads[best]], [schedules[best]])
            other_minutes = other_seconds / 60
            if self.progress:
                self.progress(PhaseFinished(seed=seed, phase="retrain", folds=tuple(f.name for f in self.folds[1:]),
                                            heads=len(others), seconds=other_seconds, chosen=best))
        per_fold = [grid[best], *others]
        folds_json: dict[str, Any] = {}
        kit: dict[str, Any] = {}
        events = None
        for fold, trained in zip(self.folds, per_fold, strict=True):
            results, predicted = self._test(fold, trained)
            setting = dict(trained.extra) if trained.extra is not None else None
            if predicted is not None and fold.index == 0:
                events = FoldEvents.build(self.task.task_name, fold.name, seed, setting, predicted,
                                          fold.references["test"])
            folds_json[fold.name] = {
                "scores": {key[5:]: value for key, value in results.items()
                           if key[5:] in self.metadata["evaluation"] or key == "test_psds1"},
                "validation_score": trained.best_value, "epoch": trained.epoch,
                "epochs_run": trained.epochs_run, "postprocessing": setting,
            }
            kit[fold.name] = {**results, "validation_score": trained.best_value, "epoch": trained.epoch,
                              "time_in_min": grid_minutes if fold.index == 0 else other_minutes}
        if len(self.folds) > 1:
            kit["aggregated_scores"] = _aggregate([kit[f.name] for f in self.folds])
        best_setting = per_fold[0].extra
        kit.update({
            "hparams": {k: v if isinstance(v, (str, int, float)) else str(v) for k, v in hparams[best].items()},
            "postprocessing": [list(p) for p in best_setting] if best_setting is not None else [],
            "score_mode": "max" if self.maximize else "min",
        })
        run = {
            "seed": seed, "selected_hyperparameters": hparams[best],
            "grid": [{"hyperparameters": h, "validation_score": t.best_value, "epoch": t.epoch,
                      "epochs_run": t.epochs_run} for h, t in zip(hparams, grid, strict=True)],
            "folds": folds_json,
        }
        return run, kit, events


def _aggregate(fold_results: list[dict[str, float]]) -> dict[str, float]:
    """The kit's pandas mean and sample std (ddof=1) of every key over folds.

    NaN folds are skipped as pandas does; an infinite fold value (``d_prime`` of a fold whose AUC is exactly 1)
    gives an infinite mean and a NaN std, as in the kit.
    """
    out: dict[str, float] = {}
    for key in fold_results[0]:
        values = np.array([r[key] for r in fold_results], dtype=np.float64)
        present = values[~np.isnan(values)]
        out[f"{key}_mean"] = float(present.mean()) if len(present) else math.nan
        with np.errstate(invalid="ignore"):  # inf - inf inside std: NaN, the kit's value
            out[f"{key}_std"] = float(np.std(present, ddof=1)) if len(present) > 1 else math.nan
    return out


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and 95 % Student-t interval of the values that are not NaN. An infinite value
    (``d_prime`` of a perfect fold) makes the mean infinite and the std and interval NaN, as in ``_aggregate``."""
    present = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = len(present)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    mean = float(present.mean())
    if n == 1 or not math.isfinite(mean):
        return {"mean": mean, "std": math.nan, "ci95": [math.nan, math.nan], "n": n}
    std = float(present.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def evaluate(task: TaskEmbeddings, config: ProbeConfig | None = None, progress: ProgressCallback | None = None
             ) -> TaskResult:
    """Train and test probes on one task; see the module docstring for the protocol. ``progress`` receives the
    stage's events (:mod:`evaluation.progress`): the plan, each phase's start and end, each bank's epochs."""
    config = config or ProbeConfig()
    start = time.time()
    evaluator = _Evaluator(task, config, progress)
    if progress:
        progress(evaluator.plan())
    runs, kits, events = [], [], []
    for seed in config.seeds:
        run, kit, fold_events = evaluator.run_seed(seed)
        runs.append(run)
        kits.append(kit)
        events.append(fold_events)
    if progress:
        progress(ProbeFinished(seconds=time.time() - start))
    metric_names = list(task.metadata["evaluation"])
    if task.embedding_type == "event" and config.psds:
        metric_names.append("psds1")
    scores = {name: summarize([fold["scores"][name] for run in runs for fold in run["folds"].values()])
              for name in metric_names}
    primary = task.primary_score
    return TaskResult(
        task_name=task.task_name,
        protocol={"name": config.protocol, "run": config.run_name, "shuffle": config.shuffle,
                  "stop_on_non_finite": config.stop_on_non_finite, "seeds": list(config.seeds),
                  "grid_points": config.grid_points if config.protocol == "hear" else None,
                  "grid": config.grid if config.protocol == "hear" else None, "precision": config.precision},
        primary_score=primary, higher_is_better=get_score(primary).maximize, score=scores[primary], scores=scores,
        runs=runs, predicted_scores=kits, probe_seconds=time.time() - start, events=events[0],
    )
