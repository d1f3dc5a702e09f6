"""What the ATST-family HEAR modules share: loading, the log-mel of the whole clip, and windows of whole tokens.

Token grid. Mel frame ``j`` is centred on sample ``160 j`` (10 j ms, centred STFT) and token ``i`` is the 64x4 patch
of frames ``4i .. 4i+3``, whose centres are ``40i, 40i+10, 40i+20, 40i+30`` ms; its support (the samples those four
64 ms windows read) is ``[40i - 32, 40i + 62)`` ms, so a token is centred at ``40 i + 15`` ms (the grid of
:mod:`hear_atst.mel`). The last token's centre never passes the end of the audio (``N // 160 >= 4P - 1``), except
in clips shorter than 240 samples (15 ms): zero-padded to one token, that token is timestamped at the clip's
midpoint (the short-clip rule of :func:`hear_atst.hear_api.centred_timestamps`).

No drift. The log-mel of the whole clip is computed once (block-wise, :class:`ATSTLogMel`) and cut into windows of
whole tokens (``4 * window_tokens`` frames, chosen per model and output); the trailing ``T % 4`` frames of the
*clip* are the only frames dropped, so token ``i`` of a 20-minute clip is exactly the patch of frames ``4i .. 4i+3``.
(The authors' ``embedding.py`` cuts 1001-frame chunks, which drops one frame per chunk and shifts chunk ``k`` by
``10 k`` ms; the windows here deliberately differ from it after the first 1000 frames.)

Bounded memory. Windows of one batch are encoded together in groups of at most :data:`MAX_WINDOW_ROWS` rows
(clips x windows), so 20 minutes of audio costs the mel, the outputs and one group's activations.
Windows never need a key-padding mask: every window holds only real tokens (HEAR batches are equal-length).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hear_atst.encoders import load_encoder
from hear_atst.encoders.atst import PATCH_FRAMES, SIZES, ATSTEncoder, random_encoder
from hear_atst.frontends.atst_mel import MIN_SAMPLES, SAMPLE_RATE, TOKEN_FIRST_CENTRE_MS, TOKEN_HOP_MS, ATSTLogMel
from hear_atst.hear_api import HearModel
from hear_atst.layers import block_indices
from hear_atst.registry import get_model_spec, require_bool
from hear_atst.weights import resolve_weights

__all__ = ["MAX_WINDOW_ROWS", "RANDOM_SEED", "TOKEN_FIRST_CENTRE_MS", "TOKEN_HOP_MS", "ATSTHearModel",
           "encode_windows", "load_atst_encoder"]

MAX_WINDOW_ROWS = 8  # windows per encoder call (clips x windows); bounds activation memory on long audio
RANDOM_SEED = 0  # random_weights=True is reproducible


def load_atst_encoder(
    name: str, kind: str, model_file_path: str | Path | None, random_weights: bool, size: str | None
) -> ATSTEncoder:
    """The encoder of registered model ``name``: from a checkpoint (argument or ``$HEAR_ATST_WEIGHTS``) or, only
    when ``random_weights=True``, randomly initialised at ``size`` ("base" or "small", seed :data:`RANDOM_SEED`)."""
    if require_bool("random_weights", random_weights, f"{name}: "):
        if model_file_path:
            raise ValueError(f"{name}: pass either model_file_path or random_weights=True, not both")
        if size not in SIZES:
            raise ValueError(f"{name}: random_weights=True needs size= one of {tuple(SIZES)}, got {size!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            encoder = random_encoder(kind, size)
    else:
        if size is not None:
            raise ValueError(f"{name}: size={size!r} only applies with random_weights=True; a checkpoint's size "
                             "is read from its tensors")
        encoder = load_encoder(resolve_weights(get_model_spec(name), model_file_path), kind)
    return encoder.requires_grad_(False).eval()


class ATSTHearModel(HearModel):
    """An ATST encoder behind the HEAR API: the front-end and the encoder."""

    sample_rate = SAMPLE_RATE

    def __init__(self, encoder: ATSTEncoder, precision: str) -> None:
        super().__init__(precision)
        self.frontend = ATSTLogMel()
        self.encoder = encoder
        if precision == "bf16":
            cast_linear_weights(encoder, torch.bfloat16)

    def resolve_blocks(self, blocks: int | Sequence[int] | None, default: int) -> list[int]:
        """0-based block indices: ``None`` = the last ``default`` blocks (all when ``default`` >= depth)."""
        if blocks is None:
            blocks = min(default, self.encoder.depth)
        return block_indices(self.encoder.depth, blocks)

    def log_mel(self, audio: Tensor) -> Tensor:
        """``[B, 1, 64, T]`` log-mel of the whole clips, float32 whatever the precision; audio shorter than
        513 samples is zero-padded at the end (one token)."""
        if audio.shape[-1] < MIN_SAMPLES:
            audio = F.pad(audio, (0, MIN_SAMPLES - audio.shape[-1]))
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.frontend(audio)

    def windows(self, mel: Tensor, window_tokens: int, blocks: Sequence[int]) -> Iterator[tuple[int, list[Tensor]]]:
        """:func:`encode_windows` of ``mel`` with this model's encoder."""
        return encode_windows(self.encoder, mel, window_tokens, blocks)


def cast_linear_weights(module: nn.Module, dtype: torch.dtype) -> None:
    """Store every ``nn.Linear`` of ``module`` in ``dtype``: under bfloat16 autocast this gives the same numbers as
    autocast's per-call weight cast (round to nearest), without re-casting 85 M weights at every call. LayerNorms
    and the position table stay float32, as autocast keeps them."""
    for child in module.modules():
        if isinstance(child, nn.Linear):
            child.to(dtype)


def encode_windows(
    encoder: ATSTEncoder, mel: Tensor, window_tokens: int, blocks: Sequence[int]
) -> Iterator[tuple[int, list[Tensor]]]:
    """Encode ``mel`` ``[B, 1, 64, T]`` in windows of ``window_tokens`` whole tokens (the last one shorter).

    Yields ``(first_token, outputs)`` per window in time order, ``outputs`` = per block ``[B, n_cls + n, D]``
    (:meth:`ATSTEncoder.forward_blocks`). Full windows are batched in groups of at most :data:`MAX_WINDOW_ROWS` rows.
    """
    if not 1 <= window_tokens <= encoder.max_patches:
        raise ValueError(f"window_tokens={window_tokens}: the encoder takes 1..{encoder.max_patches} patches")
    batch = mel.shape[0]
    n_tokens = mel.shape[-1] // PATCH_FRAMES
    starts = range(0, n_tokens, window_tokens)
    full = [start for start in starts if start + window_tokens <= n_tokens]
    per_call = max(1, MAX_WINDOW_ROWS // batch)
    groups = [full[i : i + per_call] for i in range(0, len(full), per_call)]
    if n_tokens % window_tokens:
        groups.append([starts[-1]])
    for group in groups:
        pieces = [mel[..., start * PATCH_FRAMES : min(start + window_tokens, n_tokens) * PATCH_FRAMES]
                  for start in group]
        outputs = encoder.forward_blocks(torch.cat(pieces) if len(pieces) > 1 else pieces[0], None, blocks)
        for index, start in enumerate(group):
            yield start, [y[index * batch : (index + 1) * batch] for y in outputs]
