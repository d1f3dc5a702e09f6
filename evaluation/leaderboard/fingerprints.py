"""Fingerprints that say two runs are bit-identical: of a run's results and of a task's embedding matrices."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EMBEDDING_MATRIX_SUFFIX = ".embeddings.npy"


def result_fingerprint(results: Mapping[str, Any]) -> str:
    """sha256 over every fold's scores, validation score and epoch and the selected hyper-parameters of each seed."""
    essence = [
        {
            "seed": run["seed"],
            "selected_hyperparameters": run["selected_hyperparameters"],
            "folds": {
                name: {key: fold.get(key) for key in ("scores", "validation_score", "epoch")}
                for name, fold in sorted(run["folds"].items())
            },
        }
        for run in results["runs"]
    ]
    return hashlib.sha256(json.dumps(essence, sort_keys=True).encode()).hexdigest()


def embeddings_fingerprint(folder: Path) -> str:
    """sha256 over the name and bytes of every split's embedding matrix (``<split>.embeddings.npy``)."""
    matrices = sorted(folder.glob(f"*{EMBEDDING_MATRIX_SUFFIX}"))
    if not matrices:
        raise FileNotFoundError(f"{folder}: no *{EMBEDDING_MATRIX_SUFFIX} embedding matrices")
    digest = hashlib.sha256()
    for matrix in matrices:
        digest.update(matrix.name.encode() + b"\0")
        with matrix.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
