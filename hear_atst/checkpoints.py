"""Safe checkpoint I/O: ``torch.load(weights_only=True)`` with the smallest allowlist, and safetensors.

Never unpickles code. The allowlist holds only what the official ATST files contain besides tensors:
numpy scalars/dtypes (Lightning hyper-parameters) and ``argparse.Namespace`` (the DINO-style archive).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or not the layout that was expected."""


def _numpy_scalar() -> Any:
    core = getattr(np, "_core", None) or np.core  # NumPy 2 moved numpy.core to numpy._core
    return core.multiarray.scalar


SAFE_GLOBALS: list[Any] = [
    # Pickled by NumPy 1.x under this name; NumPy 2 keeps the object under numpy._core.
    (_numpy_scalar(), "numpy.core.multiarray.scalar"),
    np.dtype,
    *(getattr(np.dtypes, name) for name in ("Float64DType", "Float32DType", "Int64DType")
      if hasattr(np, "dtypes")),
    argparse.Namespace,
]


def load_torch_file(path: str | os.PathLike[str]) -> Any:
    """Load a torch pickle (``.ckpt``/``.pt``/``.pth``) safely, memory-mapped where the format allows."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
                # Legacy (non-zip) torch files cannot be memory-mapped.
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "Weights only load failed" in str(error) or "Unsupported global" in str(error):
            raise CheckpointError(
                f"{path}: refused to unpickle it: the file contains Python objects outside the allowlist "
                f"(tensors, numpy scalars/dtypes, argparse.Namespace). Detail: {_unsupported_global(error)}"
            ) from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): {reason}") from None


def _unsupported_global(error: Exception) -> str:
    for line in str(error).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip()
    return str(error).strip().splitlines()[0]


def load_safetensors_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` of a safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file: {error}") from None
    return tensors, metadata


def save_safetensors_file(
    tensors: Mapping[str, Tensor], path: str | os.PathLike[str], metadata: Mapping[str, Any]
) -> None:
    """Write tensors atomically; metadata values that are not strings are stored as JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    contiguous = {key: tensor.detach().contiguous() for key, tensor in tensors.items()}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        tmp = Path(handle.name)
    try:
        save_file(contiguous, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def select_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
