"""HEAR module ``hear_atst.atst_clip``: ATST-Clip (``AST``, with a CLS token) behind the HEAR API.

Defaults follow the authors' linear-evaluation recipe (``get_intermediate_layers_chunks``, ``--n_last_blocks 12``):
- scene embeddings: ``cat([CLS_b for the selected blocks] + [patch-mean_b for the selected blocks])``, every block
  output after the final norm ``norm``; all 12 blocks by default -> 2 x 12 x 768 = 18432 for base;
- timestamp embeddings: the patch tokens of the last block after ``norm``, one per 40 ms token, at token centres
  ``40 i + 15`` ms: the authors' frame-level use of ATST-Clip (``comparison_models/clip_atst_module.py``),
  ``get_intermediate_layers(x, length, 1)`` without the CLS token, on one 10 s crop
  (``FreezingTransform(max_len=10)``).

Windows, cut as whole tokens from the log-mel of the whole clip (:mod:`hear_atst.atst_windows`), each with its own
CLS token:
- scene: the authors' 6 s chunks, as 600 frames = 150 tokens (their 601-frame chunks drop one frame each). For
  clips of at most 150 tokens (T <= 603 frames, 6.02 s) the scene embedding equals the reference exactly.
- timestamps: 10 s, as 1000 frames = 250 tokens (the position table's limit). For clips of at most 250 tokens
  (T <= 1003 frames, 10.02 s) the timestamp embedding equals the reference's one pass over the whole clip; longer
  clips, which the reference crops to 10 s, continue in further 1000-frame windows (no frame dropped or shifted).

Scene embeddings of longer clips (a documented deviation): the reference divides a non-final chunk's patch sum by
the patch count of the *whole remaining input* and averages chunks with equal weight, skipping later chunks of at
most 3 s (fixtures README, "chunk-averaging quirk"). Here the patch-mean part is the mean over all of the clip's
tokens (``sum / (P + 1e-6)``) and the CLS part is the mean of the windows' CLS tokens weighted by their token
counts, so every 40 ms of audio weighs the same and a short tail window weighs little.

Options of :func:`load_model`: ``blocks`` (scene: int n = last n, or 0-based indices; default all),
``timestamp_blocks`` (timestamp: default 1 = the last block; several are concatenated), ``precision``
("fp32" | "bf16"), ``random_weights`` with ``size`` ("base" | "small").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from hear_atst.atst_windows import TOKEN_FIRST_CENTRE_MS, TOKEN_HOP_MS, ATSTHearModel, load_atst_encoder
from hear_atst.encoders.atst import PATCH_FRAMES, ATSTEncoder
from hear_atst.encoders.atst_recipes import MEAN_EPS
from hear_atst.hear_api import centred_timestamps, get_scene_embeddings, get_timestamp_embeddings

__all__ = ["ATSTClipModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

SCENE_WINDOW_TOKENS = 150  # 600 frames = 6 s, the authors' ATST-Clip chunk in whole tokens
TIMESTAMP_WINDOW_TOKENS = 250  # 1000 frames = 10 s, the authors' frame-level crop (and the position table's limit)
DEFAULT_BLOCKS = 12  # --n_last_blocks 12 (linear evaluation)
DEFAULT_TIMESTAMP_BLOCKS = 1


class ATSTClipModel(ATSTHearModel):
    """ATST-Clip: CLS + patch-mean scene embeddings, patch-token timestamp embeddings."""

    def __init__(self, encoder: ATSTEncoder, blocks: int | Sequence[int] | None,
                 timestamp_blocks: int | Sequence[int] | None, precision: str) -> None:
        if not encoder.has_cls:
            raise ValueError(f"ATST-Clip needs an encoder with a CLS token (AST), got {encoder.kind}")
        super().__init__(encoder, precision)
        self.blocks = self.resolve_blocks(blocks, DEFAULT_BLOCKS)
        self.timestamp_blocks = self.resolve_blocks(timestamp_blocks, DEFAULT_TIMESTAMP_BLOCKS)
        self.scene_embedding_size = 2 * len(self.blocks) * encoder.embed_dim
        self.timestamp_embedding_size = len(self.timestamp_blocks) * encoder.embed_dim

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        mel = self.log_mel(audio)
        n_tokens = mel.shape[-1] // PATCH_FRAMES
        embeddings = audio.new_empty(audio.shape[0], n_tokens, self.timestamp_embedding_size)
        for start, outputs in self.windows(mel, TIMESTAMP_WINDOW_TOKENS, self.timestamp_blocks):
            embeddings[:, start : start + outputs[0].shape[1] - 1] = torch.cat([y[:, 1:] for y in outputs], dim=-1)
        timestamps = centred_timestamps(n_tokens, TOKEN_HOP_MS, TOKEN_FIRST_CENTRE_MS, audio, self.sample_rate)
        return embeddings, timestamps

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        mel = self.log_mel(audio)
        n_tokens = mel.shape[-1] // PATCH_FRAMES
        half = self.scene_embedding_size // 2
        cls_total = audio.new_zeros(audio.shape[0], half)
        patch_total = audio.new_zeros(audio.shape[0], half)
        for _, outputs in self.windows(mel, SCENE_WINDOW_TOKENS, self.blocks):
            n_window = outputs[0].shape[1] - 1
            cls_total += torch.cat([y[:, 0].float() for y in outputs], dim=-1) * n_window
            patch_total += torch.cat([y[:, 1:].float().sum(dim=1) for y in outputs], dim=-1)
        return torch.cat([cls_total / n_tokens, patch_total / (n_tokens + MEAN_EPS)], dim=-1)


def load_model(
    model_file_path: str | Path | None = None,
    *,
    blocks: int | Sequence[int] | None = None,
    timestamp_blocks: int | Sequence[int] | None = None,
    precision: str = "fp32",
    random_weights: bool = False,
    size: str | None = None,
) -> ATSTClipModel:
    """ATST-Clip from an official checkpoint (DINO-style base archive or Lightning small archive, teacher encoder)
    or a converted file. Without ``model_file_path`` the file is looked up in ``$HEAR_ATST_WEIGHTS``."""
    encoder = load_atst_encoder("atst_clip", "atst_clip", model_file_path, random_weights, size)
    return ATSTClipModel(encoder, blocks, timestamp_blocks, precision).eval()
