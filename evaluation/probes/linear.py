"""EVAR's linear evaluation (``TorchMLPClassifier2`` with ``hidden=()``), run by the shared training loop.

Features standardised with a StandardScaler fitted on the training rows (population std; a constant
feature keeps scale 1, as sklearn), one ``nn.Linear`` with PyTorch's default init, Adam (lr 3e-4 by default,
weight decay 1e-8, L2 as ``torch.optim.Adam``), batches of ``min(200, n_train)`` reshuffled every epoch, up
to 200 epochs, validation every epoch, early stopping after 20 epochs without improvement (a tie with the
best value counts as one, as EVAR's ``>=``: the later weights are kept), best weights restored. Differences
from EVAR: the validation rows are the task's validation split (the kit's fold rotation) instead of a random
10% of train, and the monitored value is the task's primary score; the loss is the batch mean of the
cross-entropy, where EVAR's ``-mean(onehot * log_softmax)`` also divides by the number of classes (under Adam
that only changes the relative size of its eps and of the 1e-8 L2 term).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from evaluation.probes.base import FoldRows
from evaluation.probes.heads import TrainedHeadsProbe
from evaluation.probes.mlp import HeadConfig
from evaluation.probes.train import Schedule

if TYPE_CHECKING:
    from evaluation.protocol import ProbeConfig

LINEAR_LR = 3e-4
LINEAR_WEIGHT_DECAY = 1e-8
LINEAR_EPOCHS = 200
LINEAR_PATIENCE = 20
LINEAR_BATCH = 200


def linear_head(lr: float = LINEAR_LR, weight_decay: float = LINEAR_WEIGHT_DECAY) -> HeadConfig:
    """The single linear layer as a head with no hidden layers."""
    return HeadConfig(hidden_layers=0, hidden_dim=0, dropout=0.0, lr=lr, initialization="default",
                      hidden_norm="Identity", weight_decay=weight_decay)


def linear_schedule(n_train: int, maximize: bool, epochs: int = LINEAR_EPOCHS, patience: int = LINEAR_PATIENCE
                    ) -> Schedule:
    return Schedule(max_epochs=epochs, check_every=1, patience=patience, batch_size=min(LINEAR_BATCH, n_train),
                    maximize=maximize, ties_improve=True)


def standardize(x: Tensor, train_rows: np.ndarray) -> Tensor:
    """``(x - mean) / std`` with statistics of the training rows (float64 statistics, float32 result)."""
    train = x[torch.as_tensor(train_rows, dtype=torch.long, device=x.device)].double()
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std == 0, torch.ones_like(std), std)
    return ((x.double() - mean) / std).float()


class LinearProbe(TrainedHeadsProbe):
    """EVAR's linear probe as a grid of one; each fold's features are standardised with its training rows."""

    per_fold_inputs = True

    @classmethod
    def check_config(cls, config: ProbeConfig) -> None:
        if not config.shuffle or config.stop_on_non_finite:
            raise ValueError("shuffle=False and stop_on_non_finite=True reproduce the HEAR kit's training; the linear "
                             "protocol follows EVAR, which shuffles and has no such stop")

    @classmethod
    def run_name_parts(cls, config: ProbeConfig) -> list[str]:
        return [*[f"lr={config.linear_lr:g}"] * (config.linear_lr != LINEAR_LR),
                *[f"wd={config.linear_weight_decay:g}"] * (config.linear_weight_decay != LINEAR_WEIGHT_DECAY)]

    def heads(self, n_train: int) -> tuple[list[dict[str, Any]], list[HeadConfig], list[Schedule]]:
        config = self.context.config
        head = linear_head(config.linear_lr, config.linear_weight_decay)
        schedule = linear_schedule(n_train, self.context.maximize)
        hparams = [{"protocol": "linear", "lr": head.lr, "weight_decay": head.weight_decay,
                    "batch_size": schedule.batch_size, "max_epochs": schedule.max_epochs,
                    "patience": schedule.patience}]
        return hparams, [head], [schedule]

    def inputs(self, fold: FoldRows) -> Tensor:
        return standardize(self.context.x, fold.train_rows)
