"""The ``knn`` probe: exact k-nearest-neighbour voting by cosine similarity, with no training loop.

Embeddings are (optionally, ``ProbeConfig.knn_standardize``) standardised with the fold's training statistics,
then L2-normalised, so that a dot product is the cosine similarity. Every query row's ``max(K_GRID)`` most similar
training rows are found exactly (a batched matrix product and ``topk`` on the device, ``QUERY_CELLS`` similarities
at a time); the votes of the first k of them give, per label, the weighted share of neighbours carrying it:
``uniform`` weights every neighbour 1, ``similarity`` weights it ``exp(cosine / TEMPERATURE)`` (the weighted kNN of
Wu et al. 2018, as DINO evaluates). For multiclass tasks the shares sum to 1 (probabilities over classes); for
multilabel tasks and event frames each label's share is its probability (so an event frame is active when more
than half of its neighbours' weight carries the label). Candidates are every (k, weighting) of ``K_GRID`` (k at most
the training rows) x ``WEIGHTINGS``; the one with the best validation value is chosen on the first fold, as the MLP
grid's point is, and each other fold reports its own validation value for it (and, for event tasks, chooses its
post-processing on it). kNN is deterministic: every seed gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from evaluation.probes.base import FoldRows, Probe
from evaluation.probes.linear import standardize

if TYPE_CHECKING:
    from evaluation.protocol import ProbeConfig

K_GRID = (1, 3, 5, 10, 20, 50)
WEIGHTINGS = ("uniform", "similarity")
TEMPERATURE = 0.07
QUERY_CELLS = 1 << 24  # similarities computed at once (64 MiB float32)
_LOGIT_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before their logits are taken


@dataclass
class KnnFit:
    """One fold's chosen (k, weighting), with the validation value that chose it."""

    point: int
    best_value: float
    extra: Any
    epoch: int = 0
    epochs_run: int = 0


class KnnProbe(Probe):
    """Cosine kNN; see the module docstring."""

    @classmethod
    def check_config(cls, config: ProbeConfig) -> None:
        if not config.shuffle or config.stop_on_non_finite:
            raise ValueError("the knn protocol does not train: batch order and non-finite stops do not apply to it")
        if config.precision != "fp32":
            raise ValueError(f"the knn protocol computes similarities in fp32; precision {config.precision!r} does "
                             "not apply to it")

    @classmethod
    def run_name_parts(cls, config: ProbeConfig) -> list[str]:
        return ["standardized"] * config.knn_standardize

    @classmethod
    def protocol_fields(cls, config: ProbeConfig) -> dict[str, Any]:
        return {"grid_points": None, "grid": None, "knn_standardize": config.knn_standardize}

    def candidates(self, n_train: int) -> list[dict[str, Any]]:
        ks = sorted({min(k, n_train) for k in K_GRID})
        self._points = [{"k": k, "weighting": weighting} for k in ks for weighting in WEIGHTINGS]
        return [dict(point) for point in self._points]

    def _unit_rows(self, fold: FoldRows) -> Tensor:
        """Every row under the fold's standardisation (if any), L2-normalised."""
        x = standardize(self.context.x, fold.train_rows) if self.context.config.knn_standardize else self.context.x
        return torch.nn.functional.normalize(x, dim=1)

    def votes(self, fold: FoldRows, rows: np.ndarray, points: Sequence[int]) -> list[np.ndarray]:
        """Per point, the label probabilities [len(rows), labels] of ``rows`` voted by the fold's training rows."""
        x = self._unit_rows(fold)
        device = x.device
        train = torch.as_tensor(fold.train_rows, dtype=torch.long, device=device)
        bank, labels = x[train], self.context.y[train]
        k_max = max(self._points[p]["k"] for p in points)
        chunk = max(1, QUERY_CELLS // max(len(train), k_max * labels.shape[1]))
        query_rows = torch.as_tensor(rows, dtype=torch.long, device=device)
        out: list[list[Tensor]] = [[] for _ in points]
        for start in range(0, len(query_rows), chunk):
            similarity = x[query_rows[start:start + chunk]] @ bank.T
            top, index = similarity.topk(k_max, dim=1)  # sorted, most similar first
            neighbour_labels = labels[index]  # [q, k_max, labels]
            for slot, point in enumerate(points):
                k, weighting = self._points[point]["k"], self._points[point]["weighting"]
                weights = torch.ones_like(top[:, :k]) if weighting == "uniform" else torch.exp(
                    (top[:, :k] - top[:, :1]) / TEMPERATURE)  # shifted by the row's best: the same shares, no overflow
                share = (weights[:, :, None] * neighbour_labels[:, :k]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
                out[slot].append(share)
        return [torch.cat(parts).cpu().numpy().astype(np.float32) for parts in out]

    def logits(self, probabilities: np.ndarray) -> np.ndarray:
        """Logits of the votes: log-probabilities (multiclass) or log-odds (multilabel), clipped away from 0 and 1."""
        p = np.clip(probabilities, _LOGIT_EPS, 1 - _LOGIT_EPS)
        return (np.log(p) - np.log1p(-p) if self.context.multilabel else np.log(p)).astype(np.float32)

    def fit(self, folds: Sequence[FoldRows], points: Sequence[int], seed: int) -> list[KnnFit]:
        fits = []
        for fold in folds:
            validate = self.context.validator(fold)
            for point, probabilities in zip(points, self.votes(fold, fold.valid_rows, points), strict=True):
                value, extra = validate(probabilities, self.logits(probabilities))
                if math.isnan(value):
                    value = -math.inf if self.context.maximize else math.inf
                fits.append(KnnFit(point, value, extra))
        if self.context.log:
            self.context.log(f"knn: {len(points)} point(s) voted on {len(folds)} fold(s)")
        return fits

    def predict(self, fitted: KnnFit, fold: FoldRows, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (probabilities,) = self.votes(fold, rows, [fitted.point])
        return probabilities, self.logits(probabilities)
