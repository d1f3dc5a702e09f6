"""Safe checkpoint I/O: ``torch.load(weights_only=True)`` with the smallest allowlist, and safetensors.

Never unpickles code. The allowlist holds only what the official ATST files contain besides tensors:
numpy scalars/dtypes (Lightning hyper-parameters) and ``argparse.Namespace`` (the DINO-style archive).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hear_atst.atomic import write_bytes_atomic

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or not the layout that was expected."""


def _numpy_scalar() -> Any:
    core = getattr(np, "_core", None) or np.core  # NumPy 2 moved numpy.core to numpy._core
    return core.multiarray.scalar


SAFE_GLOBALS: list[Any] = [
    # Pickled by NumPy 1.x under this name (the released files); NumPy 2 keeps the object under numpy._core.
    (_numpy_scalar(), "numpy.core.multiarray.scalar"),
    _numpy_scalar(),  # as pickled by NumPy 2 (checkpoints written by recent training runs)
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
        message = str(error).strip()
        if "Unsupported global" in message or "GLOBAL " in message:
            raise CheckpointError(
                f"{path}: refused to unpickle it: the file contains Python objects outside the allowlist "
                f"(tensors, numpy scalars/dtypes, argparse.Namespace). Detail: {_unsupported_global(error)}"
            ) from None
        imported = _pickle_imports(path) if "Weights only load failed" in message else []
        if imported:  # a plain pickle (protocol 4+: torch's unpickler stops at its FRAME opcode, "operand 149")
            raise CheckpointError(
                f"{path}: refused to unpickle it as unsafe: it is a plain pickle whose loading would import and call "
                f"{', '.join(imported[:5])}; only torch checkpoints of tensors (and numpy scalars/dtypes, "
                "argparse.Namespace) are loaded"
            ) from None
        if "Weights only load failed" in message:  # not a pickle torch can read (e.g. "Unsupported operand")
            unpickler = [line.strip() for line in message.splitlines() if line.strip()]
            reason = next((line for line in unpickler if line.startswith("Unsupported")), "unreadable pickle")
            detail = f"its pickle stream is invalid: {reason}"
        else:
            detail = type(error).__name__ + (f": {message.splitlines()[0]}" if message else "")
        raise CheckpointError(
            f"{path}: not a torch checkpoint, or a truncated or corrupt one (torch.load raised {detail})"
        ) from None


def _pickle_imports(path: Path) -> list[str]:
    """``module.name`` of every global a plain pickle file imports, read with :mod:`pickletools` (which executes
    nothing); empty when the file is no readable pickle."""
    import pickletools

    imported: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as handle:
            for opcode, argument, _ in pickletools.genops(handle):
                if opcode.name == "GLOBAL" or opcode.name == "INST":
                    imported.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    imported.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(argument, str):
                    strings.append(argument)
    except Exception:  # any failure means: not a pickle this can describe
        return []
    return list(dict.fromkeys(imported))


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
    from safetensors.torch import save

    meta = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    contiguous = {key: tensor.detach().contiguous() for key, tensor in tensors.items()}
    write_bytes_atomic(path, save(contiguous, metadata=meta))


def is_safetensors_file(path: str | os.PathLike[str]) -> bool:
    """True when the file starts like safetensors (8-byte little-endian header size, then a JSON object)."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000


def summarize_keys(keys: Iterable[str], limit: int = 8) -> str:
    """Key groups (first two name parts, with counts), e.g. ``model.student.* (150), model.teacher.* (146)``."""
    groups = Counter(".".join(key.split(".")[:2]) + ("" if key.count(".") < 2 else ".*") for key in keys)
    shown = [f"{name} ({count})" for name, count in sorted(groups.items())[:limit]]
    more = len(groups) - limit
    return ", ".join(shown) + (f", ... {more} more groups" if more > 0 else "") if shown else "no keys"


def check_state_dict(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], what: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the keys and shapes of ``expected``.

    The message names ``what`` was expected and lists (briefly) the missing and unexpected keys and every shape
    mismatch with both shapes.
    """
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            problems.append(f"{len(items)} {label}: {', '.join(items[:5])}{', ...' if len(items) > 5 else ''}")
    if problems:
        raise CheckpointError(f"the tensors do not match the expected {what}: " + "; ".join(problems))


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
