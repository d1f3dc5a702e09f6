"""Probes that train heads with the shared training loop (:mod:`evaluation.probes.train`): the kit's MLP grid and
the linear probe differ only in their candidates, their settings and the input each fold's heads see.

Heads of the same schedule train together in one bank; the kit's fast/faster grids vary ``max_epochs``,
``check_val_every_n_epoch`` and ``patience`` between points, so each schedule gets its own bank. A head's position
among the points fitted together is part of its initialisation seed (on the first fold its grid position; on the
other folds, where the chosen point is fitted alone, 0).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evaluation.probes.base import FoldRows, Probe
from evaluation.probes.mlp import HeadConfig, predict
from evaluation.probes.train import Member, Schedule, Trained, train_heads


def check_epoch_cap(max_epochs: int, check_every: int) -> None:
    """Refuse an epoch cap below a schedule's validation interval (no validation would ever run)."""
    if max_epochs < check_every:
        raise ValueError(f"max_epochs={max_epochs} is below this grid point's validation interval ({check_every} "
                         f"epochs): no validation would run; cap at {check_every} or more")


class TrainedHeadsProbe(Probe):
    """Heads trained per (fold, candidate) and early-stopped on the fold's validator."""

    trains = True
    per_fold_inputs = False  # True: each fold's heads see their own input (e.g. standardised with its statistics)

    @abstractmethod
    def heads(self, n_train: int) -> tuple[list[dict[str, Any]], list[HeadConfig], list[Schedule]]:
        """Candidates as (hyper-parameters, head, schedule before this run's settings)."""

    def inputs(self, fold: FoldRows) -> Tensor:
        """The rows every head of ``fold`` trains and predicts on."""
        return self.context.x

    def candidates(self, n_train: int) -> list[dict[str, Any]]:
        hparams, self._heads, schedules = self.heads(n_train)
        self._schedules = [self.run_schedule(schedule) for schedule in schedules]
        return hparams

    def run_schedule(self, schedule: Schedule) -> Schedule:
        """A grid point's ``schedule`` under this run's settings: batch order, the kit's stop on non-finite values,
        and ``max_epochs`` capped by ``ProbeConfig.max_epochs`` (smoke runs)."""
        config = self.context.config
        schedule = dataclasses.replace(schedule, shuffle=config.shuffle, stop_on_non_finite=config.stop_on_non_finite)
        if config.max_epochs is None:
            return schedule
        check_epoch_cap(config.max_epochs, schedule.check_every)
        return dataclasses.replace(schedule, max_epochs=min(schedule.max_epochs, config.max_epochs))

    def fit(self, folds: Sequence[FoldRows], points: Sequence[int], seed: int) -> list[Trained]:
        """Every (fold, point) trained, fold-major; points with different schedules train in separate banks."""
        groups: dict[Schedule, list[int]] = {}
        for slot, index in enumerate(points):
            groups.setdefault(self._schedules[index], []).append(slot)
        trained: dict[tuple[int, int], Trained] = {}
        for schedule, slots in groups.items():
            results = self._train_bank(folds, [(slot, self._heads[points[slot]]) for slot in slots], schedule, seed)
            trained.update(zip([(f, slot) for f in range(len(folds)) for slot in slots], results, strict=True))
        return [trained[f, slot] for f in range(len(folds)) for slot in range(len(points))]

    def _train_bank(self, folds: Sequence[FoldRows], heads: Sequence[tuple[int, HeadConfig]], schedule: Schedule,
                    seed: int) -> list[Trained]:
        """Heads of one schedule on every fold, fold-major (one fold at a time when each fold has its own input)."""
        context = self.context
        if self.per_fold_inputs:
            return [t for fold in folds
                    for t in train_heads(self._members([fold], heads, seed), self.inputs(fold), context.y, schedule,
                                         context.multilabel, context.config.precision, context.progress)]
        return train_heads(self._members(folds, heads, seed), context.x, context.y, schedule, context.multilabel,
                           context.config.precision, context.progress)

    def _members(self, folds: Sequence[FoldRows], heads: Sequence[tuple[int, HeadConfig]], seed: int) -> list[Member]:
        """One member per (fold, head), fold-major; a head's slot (its position among the points fitted together) is
        part of its init seed."""
        members = []
        for fold in folds:
            for index, head in heads:
                members.append(Member(
                    config=head, init_seed=seed * 1_000_003 + fold.index * 1009 + index,
                    shuffle_seed=seed * 1_000_003 + fold.index, train_rows=fold.train_rows,
                    valid_rows=fold.valid_rows, validate=self.context.validator(fold), data_key=fold.name,
                ))
        return members

    def predict(self, fitted: Trained, fold: FoldRows, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.inputs(fold)
        index = torch.as_tensor(rows, dtype=torch.long, device=x.device)
        probs, logits = predict([fitted.state], x[index], self.context.multilabel, self.context.config.precision)
        return probs[0].cpu().numpy(), logits[0].cpu().numpy()
