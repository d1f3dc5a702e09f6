"""Encoder families and the one entry point that loads them from any supported checkpoint file.

A family is a module with ``KINDS``, ``extract_encoder_state(checkpoint, kind, source)`` (select the encoder's
tensors from a released checkpoint layout, canonical keys) and ``build_encoder(kind, state)`` (derive the
configuration from the shapes, strict load, ``eval()``). To add one, write that module and list its kinds in
:data:`hear_atst.registry.ENCODER_FAMILIES`.

Besides the released formats, every family loads this project's converted files (``hear-atst convert``):
the encoder alone as safetensors with metadata ``{"format": "hear-atst-encoder/1", "kind", "config",
"source_sha256"}``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from hear_atst.checkpoints import (
    CheckpointError,
    is_safetensors_file,
    load_safetensors_file,
    load_torch_file,
    save_safetensors_file,
    sha256_file,
)
from hear_atst.registry import ENCODER_FAMILIES

FORMAT = "hear-atst-encoder/1"

# Order in which ``convert`` without --kind tries the kinds: the first whose encoder can be extracted and built
# wins. ATST-C2F comes after ATST-Frame so that a bare FrameAST state dict is called ATST-Frame; a C2F
# distillation archive is not an SSL archive, so ATST-Clip/ATST-Frame do not claim its teacher.
DETECTION_ORDER = ("atst_clip", "atst_frame", "atst_c2f", "asit")


def family(kind: str) -> ModuleType:
    """The family module that handles ``kind``."""
    if kind not in ENCODER_FAMILIES:
        raise ValueError(f"unknown encoder kind {kind!r}; known kinds: {', '.join(ENCODER_FAMILIES)}")
    module = importlib.import_module(ENCODER_FAMILIES[kind])
    if kind not in module.KINDS:
        raise RuntimeError(f"{module.__name__} does not declare kind {kind!r} (KINDS={module.KINDS})")
    return module


def load_encoder(path: str | Path, kind: str) -> nn.Module:
    """The ``kind`` encoder from a released checkpoint or a converted file, in eval mode."""
    path = Path(path)
    module = family(kind)
    if path.is_file() and is_safetensors_file(path):
        tensors, metadata = load_safetensors_file(path)
        if "format" in metadata:
            return _load_converted(path, kind, tensors, metadata)
        state = module.extract_encoder_state(tensors, kind, str(path))  # a plain tensor file
        return _build(module, kind, state, str(path))
    checkpoint = load_torch_file(path)
    state = module.extract_encoder_state(checkpoint, kind, str(path))
    del checkpoint  # keep only the selected encoder tensors
    return _build(module, kind, state, str(path))


def convert_checkpoint(src: str | Path, dst: str | Path, kind: str | None = None) -> dict[str, str]:
    """Write the encoder of ``src`` alone to ``dst`` (safetensors) and return the metadata written.

    ``kind`` None: the first kind of :data:`DETECTION_ORDER` whose encoder ``src`` holds.
    """
    src, dst = Path(src), Path(dst)
    if kind is None:
        kind, encoder = _detect(src)
    else:
        encoder = load_encoder(src, kind)
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "config": json.dumps(encoder.config, sort_keys=True),
        "source_sha256": sha256_file(src),
    }
    save_safetensors_file(encoder.state_dict(), dst, metadata)
    return metadata


def _detect(src: Path) -> tuple[str, nn.Module]:
    reasons = []
    for kind in DETECTION_ORDER:
        try:
            return kind, load_encoder(src, kind)
        except CheckpointError as error:
            reasons.append(f"  {kind}: {error}")
    raise CheckpointError(f"{src}: no known encoder in this file; pass --kind. Tried:\n" + "\n".join(reasons))


def _load_converted(path: Path, kind: str, tensors: dict[str, Any], metadata: dict[str, str]) -> nn.Module:
    if metadata["format"] != FORMAT:
        raise CheckpointError(f"{path}: format {metadata['format']!r} is not supported (expected {FORMAT!r})")
    if metadata.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {metadata.get('kind')!r} encoder, but {kind!r} was asked for")
    encoder = _build(family(kind), kind, tensors, str(path))
    stored = json.loads(metadata.get("config", "null"))
    if stored != encoder.config:
        raise CheckpointError(f"{path}: the stored config {stored} does not match the tensors ({encoder.config})")
    return encoder


def _build(module: ModuleType, kind: str, state: dict[str, Any], source: str) -> nn.Module:
    try:
        return module.build_encoder(kind, state)
    except CheckpointError as error:
        raise CheckpointError(f"{source}: {error}") from None
