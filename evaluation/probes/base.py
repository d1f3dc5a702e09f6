"""The probe interface: what the shared probe stage (:mod:`evaluation.protocol`) asks of every probe.

A probe is fitted on a fold's training rows, using its validation rows to choose among its candidates
(hyper-parameter points), and predicts label probabilities for any rows. The stage owns everything else, the same
for every probe: the fold rotation, the search on the first fold and the refit of the chosen point on the others,
the seeds, the test scores, event post-processing (chosen on validation through the fold's validator), and the
results files. A probe never sees the test rows until :meth:`Probe.predict` is asked for them.

Adding a probe: one module under ``evaluation/probes/`` with a :class:`Probe` subclass, and one line in
:data:`evaluation.probes.registry.PROBES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from torch import Tensor

from evaluation.probes.train import Validator
from evaluation.progress import ProgressCallback

if TYPE_CHECKING:
    from evaluation.protocol import ProbeConfig

Log = Callable[[str], None]


class FoldRows(Protocol):
    """One entry of the fold rotation, as a probe sees it: row indices into :attr:`ProbeContext.x`."""

    index: int  # position in the rotation (0: the fold the candidates are searched on)
    name: str  # the test split(s), "|"-joined
    train_rows: np.ndarray
    valid_rows: np.ndarray


class Fitted(Protocol):
    """A probe fitted on one fold at one candidate point, chosen (checkpoint, neighbours ...) on validation."""

    best_value: float  # the validation value the choice was made on (the task's primary score, or the loss)
    epoch: int  # 0-based epoch of the chosen checkpoint (0 for probes without training)
    epochs_run: int  # epochs trained (0 for probes without training)
    extra: Any  # what the fold's validator returned with that value (an event task's post-processing setting)


@dataclass(frozen=True)
class ProbeContext:
    """What a probe works on: every split's rows stacked once on the device, and how to judge on validation."""

    x: Tensor  # float32 [rows, D]
    y: Tensor  # float32 [rows, labels], one- or multi-hot
    multilabel: bool
    maximize: bool  # direction of the validation value
    config: ProbeConfig
    metadata: Mapping[str, Any]  # task_metadata.json
    validator: Callable[[FoldRows], Validator]  # (probabilities, logits) of a fold's validation rows -> (value, extra)
    log: Log | None = None  # progress lines; a probe may report through it
    progress: ProgressCallback | None = None  # progress events (evaluation.progress), e.g. from train_heads


class Probe(ABC):
    """One probe family. Class methods judge a :class:`ProbeConfig` before any data exists (the CLI, the run
    name); an instance probes one task."""

    trains: ClassVar[bool] = False  # True: it trains for epochs, so an epoch cap (ProbeConfig.max_epochs) applies

    def __init__(self, context: ProbeContext) -> None:
        self.context = context

    # ------------------------------------------------------------------------------------------ settings

    @classmethod
    def check_config(cls, config: ProbeConfig) -> None:
        """Raise ValueError for a setting this probe cannot honour (e.g. the kit's batch order for a probe that
        does not train); by default every setting applies."""
        return

    @classmethod
    def check_task(cls, config: ProbeConfig, metadata: Mapping[str, Any]) -> None:
        """Raise ValueError, before anything is embedded, for settings this task's candidates cannot run with; by
        default any task can."""
        return

    @classmethod
    def run_name_parts(cls, config: ProbeConfig) -> list[str]:
        """This probe's settings that change its numbers and differ from the defaults, e.g. ``["grid=fast"]``."""
        return []

    @classmethod
    def protocol_fields(cls, config: ProbeConfig) -> dict[str, Any]:
        """Fields of the ``protocol`` block of ``results.json`` beyond the shared ones."""
        return {"grid_points": None, "grid": None}

    # ------------------------------------------------------------------------------------------ fitting

    @abstractmethod
    def candidates(self, n_train: int) -> list[dict[str, Any]]:
        """The candidate points, in order (ties on validation keep the earlier one); ``n_train``: rows of the
        first fold's training split. Each dict is recorded as that point's ``hyperparameters``."""

    @abstractmethod
    def fit(self, folds: Sequence[FoldRows], points: Sequence[int], seed: int) -> list[Fitted]:
        """Fit every (fold, point), fold-major; ``points`` index :meth:`candidates`."""

    @abstractmethod
    def predict(self, fitted: Fitted, fold: FoldRows, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, logits)`` [len(rows), labels] of a fitted probe of ``fold`` on ``rows``: softmax (or
        sigmoid, multilabel) probabilities, and logits whose softmax (sigmoid) gives them."""
