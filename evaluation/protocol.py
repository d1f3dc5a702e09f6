"""The probe stage: ``evaluate(task, config)`` trains probes on a task's embeddings and scores them.

Folds (hear-eval-kit §3.5): ``trainvaltest`` is one split (train/valid/test); k-fold tasks rotate the sorted
folds, test = fold i, valid = fold (i+1) mod k, train = the rest (in sorted order). With the ``hear``
protocol the kit's grid (:mod:`evaluation.probes.grid`) is trained on fold 0 only, all grid points with the same
schedule together (the ``default`` grid has one schedule; ``fast`` and ``faster`` vary max epochs, validation
interval and patience, and each schedule gets its own bank); the best point by validation score over the whole
grid (stable sort, so ties keep grid order) is retrained on every other fold, all
folds together; each fold is tested with its own best checkpoint and, for event tasks, the post-processing
setting chosen at that checkpoint's validation. The ``linear`` protocol trains EVAR's linear probe the same
way (a grid of one); the ``knn`` protocol votes with cosine nearest neighbours, its (k, weighting) grid searched
the same way. Each seed repeats everything with its own initialisation, batch order and dropout.

Every probe is one module under :mod:`evaluation.probes` behind the interface of :mod:`evaluation.probes.base`,
found by its protocol name in :mod:`evaluation.probes.registry`: this module never branches on the probe.

Summary statistics (``TaskResult.score``/``scores``): over every (fold, seed) test value — ``n = folds x
seeds`` — the mean, the sample std (ddof=1) and a 95 % Student-t interval ``mean ± t(0.975, n-1) std/sqrt(n)``
(NaN for n = 1). The interval therefore mixes fold-to-fold and seed-to-seed variation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from evaluation.class_scores import (
    DEFAULT_COLLAR_S,
    confusion_matrix,
    event_class_scores,
    mean_over_seeds,
    scene_class_scores,
)
from evaluation.data import TaskEmbeddings
from evaluation.events import FrameLayout, postprocessing_settings, select_postprocessing
from evaluation.predictions import FoldPredictions, TestPredictions
from evaluation.probes.base import Fitted, Probe, ProbeContext
from evaluation.probes.mlp import compute_dtype
from evaluation.probes.registry import probe_class
from evaluation.progress import PhaseFinished, PhaseStarted, ProbeFinished, ProbePlan, ProgressCallback
from evaluation.results import FoldEvents
from evaluation.scores import EventMap, get_score, psds

PSDS_THRESHOLDS = np.arange(1 / 100, 1, 1 / 50)  # 50 operating points 0.01 .. 0.99 (DCASE task 4 baseline)


@dataclass
class ProbeConfig:
    """How to probe. ``shuffle=False`` reproduces the kit's never-shuffled training batches and
    ``stop_on_non_finite=True`` its early stop at a NaN or infinite validation score (both off by default)."""

    protocol: str = "hear"  # a name in evaluation.probes.registry.PROBES: "hear" | "linear" | "knn"
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
    knn_standardize: bool = False  # knn: standardise with the fold's training statistics before L2-normalising

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.max_epochs is not None and not self.probe.trains:
            raise ValueError(f"the {self.protocol} protocol does not train: an epoch cap does not apply to it")
        self.probe.check_config(self)
        if not self.linear_lr > 0 or self.linear_weight_decay < 0:
            raise ValueError(f"linear_lr must be > 0 and linear_weight_decay >= 0, got {self.linear_lr!r}, "
                             f"{self.linear_weight_decay!r}")
        compute_dtype(self.precision)  # raises ValueError on an unknown precision

    @property
    def probe(self) -> type[Probe]:
        """The probe of :attr:`protocol` (ValueError for an unknown name)."""
        return probe_class(self.protocol)

    @property
    def run_name(self) -> str:
        """The probe's settings name, the leaderboard's protocol label: the protocol plus every setting that changes
        its scores and differs from the default (e.g. ``hear``, ``linear``, ``hear-grid=fast-precision=bf16``).
        Runs of one settings name with other seeds are ranked together (:attr:`folder_name` keeps them apart)."""
        default = ProbeConfig()
        parts = [self.protocol, *self.probe.run_name_parts(self)]
        parts += ["kit-order"] * (not self.shuffle)
        parts += ["stop-non-finite"] * self.stop_on_non_finite
        parts += [f"precision={self.precision}"] * (self.precision != default.precision)
        parts += [f"max-epochs={self.max_epochs}"] * (self.max_epochs is not None)
        return "-".join(parts)

    @property
    def folder_name(self) -> str:
        """The run's identity, its results sub-folder: :attr:`run_name` plus the seeds unless they are ``[0]``
        (``seeds=0-4`` for a range, else ``seeds=3_1_7``) and ``no-psds`` when PSDS is off, so a run never
        overwrites a run of other settings; rerun with the same settings, it replaces itself."""
        seeds = list(self.seeds)
        if seeds == [0]:
            parts = [self.run_name]
        elif len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
            parts = [self.run_name, f"seeds={seeds[0]}-{seeds[-1]}"]
        else:
            parts = [self.run_name, "seeds=" + "_".join(str(seed) for seed in seeds)]
        return "-".join(parts + ["no-psds"] * (not self.psds))


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
    predictions: TestPredictions | None = None  # every (seed, fold)'s test rows (test.predictions.npz/.json)
    class_scores: dict[str, Any] | None = None  # per-label scores (evaluation.class_scores)

    def to_json(self) -> dict[str, Any]:
        keys = ("protocol", "primary_score", "higher_is_better", "score", "scores", "runs")
        return {**{key: getattr(self, key) for key in keys},
                **({"class_scores": self.class_scores} if self.class_scores is not None else {})}

    def to_predicted_scores(self, seed_index: int = 0) -> dict[str, Any]:
        """The kit's ``test.predicted-scores.json`` dict for one seed (the runner adds ``embedding_path``)."""
        return self.predicted_scores[seed_index]


# ------------------------------------------------------------------------------------------------ inputs


def check_probe_settings(config: ProbeConfig, metadata: dict[str, Any]) -> None:
    """Refuse, before anything is embedded, settings the task's candidates cannot run with (e.g. an epoch cap below
    the validation interval of a grid point this run would sample)."""
    config.probe.check_task(config, metadata)


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
    def __init__(self, task: TaskEmbeddings, config: ProbeConfig, log: Callable[[str], None] | None = None,
                 progress: ProgressCallback | None = None):
        self.progress = progress
        _check_task(task)
        self.task, self.config = task, config
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
        self.probe = config.probe(ProbeContext(
            x=self.data.x, y=self.data.y, multilabel=self.multilabel, maximize=self.maximize, config=config,
            metadata=self.metadata, validator=self._validator, log=log, progress=progress))

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

    # ---------------------------------------------------------------- test

    def _test(self, fold: _Fold, trained: Fitted) -> tuple[dict[str, float], EventMap | None, np.ndarray, np.ndarray]:
        """The test scores of one fold's fitted probe (the kit's keys), for event tasks its events, and its test
        (probabilities, logits)."""
        probs, logits = self.probe.predict(trained, fold, fold.test_rows)
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
        return out, predicted, probs, logits

    def _psds(self, layout: FrameLayout, probs: np.ndarray, reference: EventMap, setting: Any) -> float:
        points = [layout.events(probs, self.labels, setting, threshold=float(t)) for t in PSDS_THRESHOLDS]
        durations = {name: self._duration_s(name, times, reference) for name, times in zip(layout.files, layout.times,
                                                                                           strict=True)}
        return psds(points, reference, durations, self.labels)

    def _duration_s(self, name: str, times: np.ndarray, reference: EventMap) -> float:
        """A test file's duration for PSDS: its audio's, recorded when it was embedded; for an embeddings folder of
        the HEAR kit (which records none) the task's ``sample_duration``, else the last timestamp or event end."""
        if name in self.task.durations:
            return self.task.durations[name]
        if self.metadata.get("sample_duration"):
            return float(self.metadata["sample_duration"])
        return max([times[-1], *(e["end"] for e in reference.get(name, []))]) / 1000.0

    # ---------------------------------------------------------------- one seed

    def _head_epochs(self, hparams: dict[str, Any]) -> int:
        """The most epochs a candidate trains (0 for a probe without epochs)."""
        cap = self.config.max_epochs
        return min(int(hparams.get("max_epochs", 0)), cap if cap is not None else 10**9)

    def plan(self) -> ProbePlan:
        """The work of :meth:`run_seed` for every seed, at most (the progress display's bound)."""
        epochs = [self._head_epochs(h) for h in self.probe.candidates(len(self.folds[0].train_rows))]
        return ProbePlan(task=self.task.task_name, protocol=self.config.protocol, seeds=tuple(self.config.seeds),
                         folds=tuple(fold.name for fold in self.folds), grid_points=len(epochs),
                         grid_head_epochs=sum(epochs), retrain_head_epochs=(len(self.folds) - 1) * max(epochs))

    def _announce(self, seed: int, phase: str, folds: Sequence[_Fold], epochs: Sequence[int]) -> None:
        if self.progress:
            self.progress(PhaseStarted(seed=seed, phase=phase, folds=tuple(f.name for f in folds),
                                       heads=len(folds) * len(epochs), head_epochs=len(folds) * sum(epochs)))

    def run_seed(self, seed: int, log: Callable[[str], None] | None = None) -> _SeedResult:
        """One seed (see :class:`_SeedResult`); ``log`` gets a line after the grid search and after the other
        folds."""
        start = time.time()
        first = self.folds[0]
        hparams = self.probe.candidates(len(first.train_rows))
        epochs = [self._head_epochs(h) for h in hparams]
        self._announce(seed, "grid", [first], epochs)
        grid = self.probe.fit([first], range(len(hparams)), seed)
        order = sorted(range(len(grid)), key=lambda i: grid[i].best_value, reverse=self.maximize)
        best = order[0]
        grid_minutes = (time.time() - start) / 60
        if self.progress:
            self.progress(PhaseFinished(seed=seed, phase="grid", folds=(first.name,), heads=len(grid),
                                        seconds=60 * grid_minutes, chosen=best, best=grid[best].best_value))
        if log:
            log(f"seed {seed}: {len(grid)} grid point(s) trained on {first.name} in {60 * grid_minutes:.0f} s; point "
                f"{best} chosen (validation {grid[best].best_value:.4f})")
        start = time.time()
        if len(self.folds) > 1:
            self._announce(seed, "retrain", self.folds[1:], [epochs[best]])
        others = self.probe.fit(self.folds[1:], [best], seed) if len(self.folds) > 1 else []
        other_minutes = (time.time() - start) / 60
        if self.progress and others:
            self.progress(PhaseFinished(seed=seed, phase="retrain", folds=tuple(f.name for f in self.folds[1:]),
                                        heads=len(others), seconds=60 * other_minutes, chosen=best))
        if log and others:
            log(f"seed {seed}: point {best} trained on the {len(others)} other fold(s) in {60 * other_minutes:.0f} s")
        per_fold = [grid[best], *others]
        folds_json: dict[str, Any] = {}
        kit: dict[str, Any] = {}
        events = None
        parts: list[FoldPredictions] = []
        pooled_events: dict[str, list[dict]] = {}
        pooled_reference: dict[str, list[dict]] = {}
        for fold, trained in zip(self.folds, per_fold, strict=True):
            results, predicted, probs, logits = self._test(fold, trained)
            setting = dict(trained.extra) if trained.extra is not None else None
            parts.append(self._fold_predictions(fold, seed, setting, probs, logits))
            if predicted is not None:
                pooled_events.update(predicted)
                pooled_reference.update(fold.references["test"])
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
        return _SeedResult(run, kit, events, parts, self._class_scores(parts, pooled_events, pooled_reference))

    def _fold_predictions(self, fold: _Fold, seed: int, setting: dict[str, float] | None, probs: np.ndarray,
                          logits: np.ndarray) -> FoldPredictions:
        names = fold.splits["test"]
        files = [f for name in names for f in self.task.splits[name].filenames]
        timestamps = np.concatenate([self.task.splits[name].timestamps for name in names]) \
            if self.task.embedding_type == "event" else None
        return FoldPredictions(seed, fold.name, setting, files, timestamps, probs, logits, fold.y[fold.test_rows])

    def _class_scores(self, parts: Sequence[FoldPredictions], predicted: EventMap, reference: EventMap
                      ) -> list[dict[str, float]]:
        """Per-label scores of one seed, every test fold pooled (:mod:`evaluation.class_scores`)."""
        if self.task.embedding_type == "event":
            return event_class_scores(predicted, reference, self.labels, self.event_collar)
        probs = np.concatenate([part.probabilities for part in parts])
        targets = np.concatenate([part.target for part in parts])
        return scene_class_scores(probs, targets, self.multilabel)

    @property
    def event_collar(self) -> float:
        """The onset collar (s) of per-label event scores: the primary score's, else 200 ms."""
        return float(self.primary.sed_params.get("t_collar", DEFAULT_COLLAR_S))


@dataclass
class _SeedResult:
    """One seed's outcome: the results.json run, the kit's predicted-scores dict, the first fold's test events,
    every fold's test predictions, and the per-label scores."""

    run: dict[str, Any]
    kit: dict[str, Any]
    events: FoldEvents | None
    predictions: list[FoldPredictions]
    class_scores: list[dict[str, float]]


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


def evaluate(task: TaskEmbeddings, config: ProbeConfig | None = None, log: Callable[[str], None] | None = None,
             progress: ProgressCallback | None = None) -> TaskResult:
    """Train and test probes on one task; see the module docstring for the protocol. ``log`` receives progress
    lines (two a seed); ``progress`` the stage's events (:mod:`evaluation.progress`): the plan, each phase's start
    and end, each bank's batches and epochs."""
    config = config or ProbeConfig()
    start = time.time()
    evaluator = _Evaluator(task, config, log, progress)
    if progress:
        progress(evaluator.plan())
    seeds = [evaluator.run_seed(seed, log) for seed in config.seeds]
    if progress:
        progress(ProbeFinished(seconds=time.time() - start))
    runs = [seed.run for seed in seeds]
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
                  **config.probe.protocol_fields(config), "precision": config.precision},
        primary_score=primary, higher_is_better=get_score(primary).maximize, score=scores[primary], scores=scores,
        runs=runs, predicted_scores=[seed.kit for seed in seeds], probe_seconds=time.time() - start,
        events=seeds[0].events,
        predictions=TestPredictions.join(task.task_name, task.embedding_type, task.prediction_type, evaluator.labels,
                                         [part for seed in seeds for part in seed.predictions]),
        class_scores=_class_scores_json(evaluator, seeds),
    )


def _class_scores_json(evaluator: _Evaluator, seeds: Sequence[_SeedResult]) -> dict[str, Any]:
    """``results.json``'s ``class_scores`` block (see :mod:`evaluation.class_scores`)."""
    task = evaluator.task
    if task.embedding_type == "event":
        basis = (f"onset-only event scores per label, collar {1000 * evaluator.event_collar:g} ms, test folds pooled, "
                 "mean over seeds")
    else:
        decision = "probability > 0.5" if evaluator.multilabel else "argmax"
        basis = f"decisions by {decision}, test folds pooled, mean over seeds"
    block: dict[str, Any] = {"basis": basis, "classes": mean_over_seeds([seed.class_scores for seed in seeds],
                                                                        evaluator.labels)}
    if task.prediction_type == "multiclass":
        first = seeds[0].predictions
        block["confusion"] = {
            "seed": first[0].seed,
            "counts": confusion_matrix(np.concatenate([p.probabilities for p in first]),
                                       np.concatenate([p.target for p in first])),
        }
    return block
