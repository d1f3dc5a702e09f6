"""HEAR module ``hear_atst.atst_frame``: ATST-Frame (``FrameAST``) behind the HEAR API.

Defaults follow the authors' frozen-encoder recipe (``methods/atstframe/embedding.py``, linear evaluation):
- timestamp embeddings: the outputs of every block (12 for the released models), each after the final norm
  ``norm_frame``, concatenated per 40 ms token in ascending block order (12 x 768 = 9216 for base), at token
  centres ``40 i + 15`` ms;
- scene embeddings: the mean of those token vectors over the clip, ``sum / (n_tokens + 1e-6)`` as the reference.

Windows: 1000 frames = 250 tokens (the most the 250-slot position table takes) cut from the log-mel of the whole
clip, see :mod:`hear_atst.atst_windows`; the scene embedding is the mean over all of the clip's tokens. Up to 10 s
both outputs equal the reference: ``get_intermediate_layers`` on the whole clip for clips of at most 1003 frames
(10.02 s), and so the authors' linear-evaluation extractor (one chunk); ``embedding.py``'s timestamp embeddings up
to 1003 frames and its scene embedding up to 1001 frames (10.00 s). Beyond, deliberately:
- ``embedding.py`` cuts 1001-frame chunks, which drop one frame each (chunk ``k`` is ``10 k`` ms late), and averages
  the chunks' means with equal weight (a short tail chunk counts as much as a full one, a 1-3-frame tail as a zero
  vector); here window ``k`` starts exactly at frame ``1000 k``, so no frame is dropped or shifted, and every token
  weighs the same;
- the linear-evaluation extractor (``downstream/model.py::PretrainedEncoderPLModule``) crops the clip centrally to
  12 s, cuts 1001-frame chunks with ``cur_len`` clipped to the chunk, encodes a chunk only when ``end > start + 20``
  frames and counts a later chunk only when ``cur_len > 500`` frames (5 s), averaging counted chunks with equal
  weight; with the 12 s crop the second chunk has at most 200 frames, so only the first 10 s of the crop ever
  count. Here the whole clip counts, at any length.

Options of :func:`load_model`: ``blocks`` (int n = the last n blocks, or a list of 0-based indices; default all),
``precision`` ("fp32" | "bf16": bfloat16 autocast of the encoder, the authors' ``bf16-mixed``; the front-end stays
float32), ``random_weights`` with ``size`` ("base" | "small") for a randomly initialised encoder (testing only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from hear_atst.atst_windows import (
    TOKEN_FIRST_CENTRE_MS,
    TOKEN_HOP_MS,
    ATSTHearModel,
    load_atst_encoder,
)
from hear_atst.encoders.atst import PATCH_FRAMES, ATSTEncoder
from hear_atst.encoders.atst_recipes import MEAN_EPS
from hear_atst.hear_api import centred_timestamps, get_scene_embeddings, get_timestamp_embeddings

__all__ = ["ATSTFrameModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

WINDOW_TOKENS = 250  # 1000 frames = 10 s, the position table's limit
DEFAULT_BLOCKS = 12  # embedding.py N_BLOCKS: every block of the released models


class ATSTFrameModel(ATSTHearModel):
    """A frame-level ATST encoder (ATST-Frame or the ATST-C2F student): per-token concatenated block outputs."""

    def __init__(self, encoder: ATSTEncoder, blocks: int | Sequence[int] | None, precision: str,
                 default_blocks: int = DEFAULT_BLOCKS) -> None:
        if encoder.has_cls:
            raise ValueError(f"{type(self).__name__} needs a frame encoder (FrameAST), got {encoder.kind}")
        super().__init__(encoder, precision)
        self.blocks = self.resolve_blocks(blocks, default_blocks)
        self.timestamp_embedding_size = len(self.blocks) * encoder.embed_dim
        self.scene_embedding_size = self.timestamp_embedding_size

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        mel = self.log_mel(audio)
        n_tokens = mel.shape[-1] // PATCH_FRAMES
        embeddings = audio.new_empty(audio.shape[0], n_tokens, self.timestamp_embedding_size)
        for start, outputs in self.windows(mel, WINDOW_TOKENS, self.blocks):
            embeddings[:, start : start + outputs[0].shape[1]] = torch.cat(outputs, dim=-1)
        timestamps = centred_timestamps(n_tokens, TOKEN_HOP_MS, TOKEN_FIRST_CENTRE_MS, audio, self.sample_rate)
        return embeddings, timestamps

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        mel = self.log_mel(audio)
        n_tokens = mel.shape[-1] // PATCH_FRAMES
        total = audio.new_zeros(audio.shape[0], self.scene_embedding_size)
        for _, outputs in self.windows(mel, WINDOW_TOKENS, self.blocks):
            total += torch.cat([y.float().sum(dim=1) for y in outputs], dim=-1)
        return total / (n_tokens + MEAN_EPS)


def frame_model_loader(kind: str, default_blocks: int, doc: str) -> Callable[..., ATSTFrameModel]:
    """The ``load_model`` of a HEAR module whose encoder is a FrameAST of ``kind`` (ATST-Frame, ATST-C2F): its
    keyword-only parameters are the options the command line accepts."""

    def load_model(
        model_file_path: str | Path | None = None,
        *,
        blocks: int | Sequence[int] | None = None,
        precision: str = "fp32",
        random_weights: bool = False,
        size: str | None = None,
    ) -> ATSTFrameModel:
        encoder = load_atst_encoder(kind, kind, model_file_path, random_weights, size)
        return ATSTFrameModel(encoder, blocks, precision, default_blocks=default_blocks).eval()

    load_model.__doc__ = doc
    return load_model


load_model = frame_model_loader("atst_frame", DEFAULT_BLOCKS, """ATST-Frame from an official checkpoint (Lightning
archive, teacher encoder) or a converted file. Without ``model_file_path`` the file is looked up in
``$HEAR_ATST_WEIGHTS``; the error says where to get it.""")
