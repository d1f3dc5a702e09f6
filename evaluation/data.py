"""In-memory form of a task's embeddings: what the embedding stage hands to the probe stage.

The on-disk form is the HEAR kit's embedding layout (see :mod:`evaluation.embeddings`); this is what
it loads into. Scene tasks have one row per clip; event tasks one row per (file, timestamp).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Label = str | int
Event = dict[str, Any]  # {"label": Label, "start": float ms, "end": float ms}


@dataclass
class SplitEmbeddings:
    """One split (``train``/``valid``/``test`` or ``foldNN``) of a task."""

    name: str
    embeddings: np.ndarray  # float32 [rows, D]
    labels: list[list[Label]]  # per row: the labels of the clip (scene) or active at the timestamp (event)
    filenames: list[str]  # per row: the clip's file name as in <split>.json
    timestamps: np.ndarray | None = None  # float64 [rows] ms, event tasks only

    def __post_init__(self) -> None:
        rows = self.embeddings.shape[0]
        if self.embeddings.ndim != 2:
            raise ValueError(f"split {self.name}: embeddings must be [rows, D], got {self.embeddings.shape}")
        if len(self.labels) != rows or len(self.filenames) != rows:
            raise ValueError(
                f"split {self.name}: {rows} embedding rows but {len(self.labels)} label rows "
                f"and {len(self.filenames)} file names"
            )
        if self.timestamps is not None and len(self.timestamps) != rows:
            raise ValueError(f"split {self.name}: {rows} embedding rows but {len(self.timestamps)} timestamps")


@dataclass
class TaskEmbeddings:
    """Everything the probe stage needs about one task."""

    metadata: dict[str, Any]  # task_metadata.json as written by hear-preprocess
    label_vocabulary: list[Label]  # index -> label, from labelvocabulary.csv
    splits: dict[str, SplitEmbeddings]
    # Event tasks: split -> {file name: reference events}, from <split>.json (files without events map to []).
    events: dict[str, dict[str, list[Event]]] = field(default_factory=dict)
    # File name -> its audio's duration in seconds, as embedded (empty for folders written by the HEAR kit).
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def task_name(self) -> str:
        return str(self.metadata["task_name"])

    @property
    def embedding_type(self) -> str:
        return str(self.metadata["embedding_type"])

    @property
    def prediction_type(self) -> str:
        return str(self.metadata["prediction_type"])

    @property
    def primary_score(self) -> str:
        return str(self.metadata["evaluation"][0])

    @property
    def split_names(self) -> list[str]:
        return list(self.metadata["splits"])


def frame_labels(events: Sequence[Event], timestamps: Sequence[float]) -> list[list[Label]]:
    """Labels active at each timestamp: a frame at ``t`` gets every event label with ``start <= t < end``.

    (hear-eval-kit uses an interval tree over ``[start, end + 0.0001)``; the two differ only for a
    timestamp exactly equal to an event's end, which this rule excludes.)
    """
    times = np.asarray(timestamps, dtype=np.float64)
    active: list[list[Label]] = [[] for _ in range(len(times))]
    for event in events:
        hits = np.nonzero((times >= float(event["start"])) & (times < float(event["end"])))[0]
        for index in hits:
            if event["label"] not in active[index]:
                active[index].append(event["label"])
    return active
