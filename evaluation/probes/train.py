"""The one training loop: heads trained together in banks, validated, early-stopped one by one.

Semantics per head are the kit's Lightning run: ``max_epochs`` epochs over the training rows in batches of
``batch_size`` (the last batch may be short); validation after every ``check_every``-th epoch (epochs
counted from 1); the best checkpoint is kept when the monitored value strictly improves (ModelCheckpoint);
training stops after ``patience`` validation checks without improvement (EarlyStopping counts checks, not
epochs); the test uses the best checkpoint. ``epoch`` is reported 0-based, as the kit's checkpoint stores it.

Differences from the kit, deliberate and tested: training rows are reshuffled every epoch unless
``shuffle=False`` (the kit never shuffles: its shuffle test compares a list with the string "train");
a NaN monitored value counts as the worst value (-inf when maximising), as Lightning's ModelCheckpoint records it,
so a head whose every check is NaN keeps its first checked state, and training goes on (a later finite value
improves on it), whereas the kit's EarlyStopping (``check_finite=True``) ends the run at the first NaN or infinite
value: ``Schedule.stop_on_non_finite=True`` reproduces that; a final batch of one row is dropped when heads have
BatchNorm (Lightning would crash); heads sharing a bank see the same batch order.

Random streams: a head's initialisation comes from its ``init_seed`` and its dropout masks from its own generator
seeded with ``init_seed ^`` :data:`DROPOUT_STREAM`; the batch order of an epoch from ``shuffle_seed``. The protocol
derives ``init_seed`` from (seed, fold, grid point) and ``shuffle_seed`` from (seed, fold), so a grid point trains
alike alone or inside a bank of any size (up to the float rounding of batched matrix products).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evaluation.probes.allocator import reuse_freed_memory
from evaluation.probes.mlp import HeadConfig, HeadState, MLPBank, compute_dtype, predict_bank
from evaluation.progress import BankStarted, EpochFinished, ProgressCallback, StepFinished

DROPOUT_STREAM = 1 << 62  # xor-ed into a head's init seed: its dropout stream, apart from every init stream
# (probabilities [Nv, C], logits [Nv, C]) of one head on its validation rows -> (monitored value, extra)
Validator = Callable[[np.ndarray, np.ndarray], tuple[float, Any]]


@dataclass(frozen=True)
class Schedule:
    """When to validate and stop (identical for every head of a bank)."""

    max_epochs: int = 500
    check_every: int = 3
    patience: int = 20
    batch_size: int = 1024
    shuffle: bool = True
    maximize: bool = True
    stop_on_non_finite: bool = False  # the kit's EarlyStopping: a NaN or infinite monitored value ends the run
    ties_improve: bool = False  # EVAR's EarlyStopping (>=): a tie replaces the best checkpoint and resets patience


@dataclass
class Member:
    """One head to train: its hyper-parameters, seeds and data (row indices into the shared matrix)."""

    config: HeadConfig
    init_seed: int
    shuffle_seed: int
    train_rows: np.ndarray
    valid_rows: np.ndarray
    validate: Validator
    data_key: str = ""  # heads with equal (data_key, shuffle_seed) share their batches


@dataclass
class Trained:
    """A trained head: the best checkpoint and its bookkeeping."""

    state: HeadState
    best_value: float
    epoch: int  # 0-based epoch of the best checkpoint
    extra: Any  # what the validator returned at the best check (e.g. the post-processing setting)
    epochs_run: int
    history: list[tuple[int, float]] = field(default_factory=list)  # (epoch, monitored value) per check


def epoch_batches(n_rows: int, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                  drop_singleton: bool) -> list[Tensor]:
    """Row positions of each batch of one epoch: ``0..n-1`` in order, or one fresh permutation."""
    order = torch.randperm(n_rows, generator=generator) if shuffle else torch.arange(n_rows)
    batches = list(torch.split(order, batch_size))
    if drop_singleton and len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def _improved(value: float, best: float, maximize: bool, ties: bool) -> bool:
    if ties and value == best:
        return True
    return value > best if maximize else value < best


class _BankRun:
    """Training state of one bank: live heads, their members, best checkpoints and patience counters."""

    def __init__(self, members: Sequence[Member], x: Tensor, y: Tensor, schedule: Schedule, multilabel: bool,
                 precision: str = "fp32", progress: ProgressCallback | None = None):
        self.members = list(members)
        self.progress = progress
        self.x, self.y, self.schedule, self.multilabel = x, y, schedule, multilabel
        self.precision = precision
        in_dim, n_out = x.shape[1], y.shape[1]
        self.bank = MLPBank([MLPBank.init_state(m.config, in_dim, n_out, m.init_seed) for m in members], x.device,
                            precision)
        self.live = list(range(len(members)))  # member index of each bank head
        self.best: list[Trained | None] = [None] * len(members)
        self.wait = [0] * len(members)
        self.history: list[list[tuple[int, float]]] = [[] for _ in members]
        self.done: dict[int, Trained] = {}
        self.dropout_streams = [torch.Generator(device=x.device).manual_seed(m.init_seed ^ DROPOUT_STREAM)
                                for m in members]
        self.streams: dict[tuple[str, int], torch.Generator] = {}
        for m in members:
            self.streams.setdefault((m.data_key, m.shuffle_seed), torch.Generator().manual_seed(m.shuffle_seed))
        self.rows = [torch.as_tensor(m.train_rows, dtype=torch.long, device=x.device) for m in members]
        self.has_norm = members[0].config.hidden_layers > 0 and members[0].config.hidden_norm == "BatchNorm1d"

    def _targets(self, rows: Tensor) -> Tensor:
        y = self.y[rows]
        return y if self.multilabel else y.argmax(dim=-1)

    def train_epoch(self) -> None:
        schedule, n_rows = self.schedule, len(self.members[0].train_rows)
        orders: dict[tuple[str, int], list[Tensor]] = {
            key: epoch_batches(n_rows, schedule.batch_size, schedule.shuffle, gen, self.has_norm)
            for key, gen in self.streams.items()
        }
        keys = [(self.members[i].data_key, self.members[i].shuffle_seed) for i in self.live]
        shared = len(set(keys)) == 1
        steps = len(next(iter(orders.values())))
        for step in range(steps):
            if shared:
                rows = self.rows[self.live[0]][orders[keys[0]][step].to(self.x.device)]
                x, targets = self.x[rows], self._targets(rows)
            else:
                rows = torch.stack([self.rows[i][orders[k][step].to(self.x.device)]
                                    for i, k in zip(self.live, keys, strict=True)])
                x, targets = self.x[rows], self._targets(rows)
            logits = self.bank.forward(x, train=True, generators=[self.dropout_streams[i] for i in self.live])
            self.bank.loss(logits, targets, self.multilabel).backward()
            self.bank.adam_step()
            if self.progress:
                self.progress(StepFinished(step=step + 1, steps=steps, heads=len(self.live)))

    def _validation_outputs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Eval-mode (probabilities, logits) of every live head on its own validation rows."""
        valid = [self.members[i].valid_rows for i in self.live]
        if all(np.array_equal(valid[0], rows) for rows in valid[1:]):
            rows = torch.as_tensor(valid[0], dtype=torch.long, device=self.x.device)
            probabilities, logits = predict_bank(self.bank, self.x[rows], self.multilabel)
        else:
            pairs = [predict_bank(MLPBank([self.bank.export(h)], self.x.device, self.precision),
                                  self.x[torch.as_tensor(rows, dtype=torch.long, device=self.x.device)],
                                  self.multilabel) for h, rows in enumerate(valid)]
            return [(p[0].cpu().numpy(), lg[0].cpu().numpy()) for p, lg in pairs]
        return [(probabilities[h].cpu().numpy(), logits[h].cpu().numpy()) for h in range(self.bank.size)]

    def validate(self, epoch: int) -> None:
        stopped = []
        for head, (probabilities, logits) in enumerate(self._validation_outputs()):
            member_index = self.live[head]
            value, extra = self.members[member_index].validate(probabilities, logits)
            self.history[member_index].append((epoch, value))
            finite = math.isfinite(value)
            if math.isnan(value):
                value = -math.inf if self.schedule.maximize else math.inf
            best = self.best[member_index]
            improved = best is None or _improved(value, best.best_value, self.schedule.maximize,
                                                 self.schedule.ties_improve)
            if improved:
                self.best[member_index] = Trained(self.bank.export(head), value, epoch, extra, epoch + 1)
                self.wait[member_index] = 0
            else:
                self.wait[member_index] += 1
            patience_spent = not improved and self.wait[member_index] >= self.schedule.patience
            if patience_spent or (self.schedule.stop_on_non_finite and not finite):
                stopped.append(head)
        if stopped:
            for head in stopped:
                self._finish(self.live[head], epoch + 1)
            keep = [h for h in range(self.bank.size) if h not in stopped]
            if keep:
                self.bank.keep(keep)
            self.live = [self.live[h] for h in keep]

    def _finish(self, member_index: int, epochs_run: int) -> None:
        best = self.best[member_index]
        if best is None:
            raise ValueError(f"head {self.members[member_index].config} was never validated: max_epochs "
                             f"{self.schedule.max_epochs} < one check every {self.schedule.check_every} epochs")
        best.epochs_run = epochs_run
        best.history = self.history[member_index]
        self.done[member_index] = best

    def _epoch_event(self, epoch: int, trained: int) -> EpochFinished:
        best = [b.best_value for b in self.best if b is not None and math.isfinite(b.best_value)]
        return EpochFinished(
            epoch=epoch + 1, max_epochs=self.schedule.max_epochs, trained=trained, training=len(self.live),
            stopped=len(self.members) - len(self.live),
            best=(max(best) if self.schedule.maximize else min(best)) if best else None)

    def run(self) -> list[Trained]:
        schedule = self.schedule
        if self.progress:
            self.progress(BankStarted(heads=len(self.members), max_epochs=schedule.max_epochs,
                                      maximize=schedule.maximize))
        epoch = -1
        for epoch in range(schedule.max_epochs):
            if not self.live:
                break
            trained = len(self.live)
            self.train_epoch()
            if (epoch + 1) % schedule.check_every == 0:
                self.validate(epoch)
            if self.progress:
                self.progress(self._epoch_event(epoch, trained))
        for member_index in self.live:
            self._finish(member_index, epoch + 1)
        return [self.done[i] for i in range(len(self.members))]


def train_heads(members: Sequence[Member], x: Tensor, y: Tensor, schedule: Schedule, multilabel: bool,
                precision: str = "fp32", progress: ProgressCallback | None = None) -> list[Trained]:
    """Train every member; heads of one architecture and training-set size share a bank. Order is kept.
    ``progress`` receives a :class:`~evaluation.progress.BankStarted` a bank, then a
    :class:`~evaluation.progress.StepFinished` a batch and an :class:`~evaluation.progress.EpochFinished` an epoch.

    ``precision="bf16"`` casts ``x`` to bfloat16 once and runs the banks' GEMMs in bfloat16 (see ``mlp``).
    Sets glibc's allocator thresholds for the process on first use (``allocator.reuse_freed_memory``).
    """
    reuse_freed_memory()
    x = x.to(compute_dtype(precision))
    groups: dict[tuple[Any, int], list[int]] = {}
    for index, member in enumerate(members):
        if len(member.train_rows) == 0:
            raise ValueError("a head has no training rows")
        groups.setdefault((member.config.family, len(member.train_rows)), []).append(index)
    results: list[Trained | None] = [None] * len(members)
    for indices in groups.values():
        indices.sort(key=lambda i: (members[i].config.lr, members[i].config.weight_decay))  # Adam runs (mlp)
        trained = _BankRun([members[i] for i in indices], x, y, schedule, multilabel, precision, progress).run()
        for index, result in zip(indices, trained, strict=True):
            results[index] = result
    return [r for r in results if r is not None]
