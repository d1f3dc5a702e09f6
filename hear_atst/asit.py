"""HEAR module for ASiT: ``load_model``, ``get_scene_embeddings``, ``get_timestamp_embeddings``.

Recipe (design: /shared/docs/asit.md §4; the authors released no embedding code):

- **Sample rate** ``16000`` by default: the released checkpoint's only known user (PretrainedSED) feeds 16 kHz fbanks,
  and hear-validator 2021.0.2 rejects 32000. ``sample_rate=32000`` selects the official pretraining front end
  (same frame grid, mel bins up to 16 kHz). The audio must already be at that rate (HEAR supplies it).
- **Chunks** of exactly 592 Kaldi frames (the pretraining length, native ``pos_embed``), i.e. 94,960 samples at
  16 kHz, advancing 592 frames (94,720 samples) so that every chunk sits on the clip's global 160 ms token grid.
  Each chunk's waveform mean is removed before its fbank. The last chunk is padded in the log-mel domain as the
  official ``_wav2fbank`` pads (log-mel 0, i.e. 0.467 after normalisation; pretraining itself never took that
  branch: its crops were at least 598 frames, see docs/models.md). Audio shorter than one 25 ms frame is first
  zero-padded to one frame.
- **Timestamp embeddings**: patch tokens averaged over the 8 frequency tokens, one per 160 ms; timestamp = token
  centre ``160 i + 87.5`` ms. Only tokens whose centre lies inside the audio are returned (at least one), so
  tokens made of padding are dropped and the last timestamp never exceeds the clip length: a clip shorter than
  87.5 ms gives one token, timestamped at the clip's midpoint (the short-clip rule of
  :func:`hear_atst.hear_api.centred_timestamps`).
- **Scene embedding**: ``[CLS ‖ mean of the returned patch tokens]`` (1536-d for ViT-B), averaged over chunks with
  weights = the chunk's real (unpadded) fbank frames.
- ``blocks``: ``n`` = the last ``n`` blocks (default, also for ``None``: 1, the last) or a list of 0-based block
  indices, each after the final norm, concatenated:
  timestamp ``n * D`` (block-major), scene ``[CLS of each block ‖ patch mean of each block]`` = ``2 n D``.
- ``precision="bf16"``: the encoder runs under bfloat16 autocast; the fbank is always float32.

Every clip is embedded independently of the others in its batch; chunks are encoded in groups of
:data:`CHUNKS_PER_FORWARD`, so memory is bounded for long audio (20 min).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hear_atst.encoders import load_encoder
from hear_atst.encoders.asit import AsitEncoder, random_encoder
from hear_atst.frontends.kaldi_fbank import NORMALISED_PAD_VALUE, KaldiFbank, frame_geometry
from hear_atst.hear_api import HearModel, centred_timestamps, get_scene_embeddings, get_timestamp_embeddings
from hear_atst.layers import block_indices
from hear_atst.registry import get_model_spec, require_bool
from hear_atst.weights import resolve_weights

__all__ = ["AsitHear", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

SAMPLE_RATES = (16000, 32000)
CHUNK_FRAMES = 592
PATCH_FRAMES = 16
FREQ_PATCHES = 8
CHUNKS_PER_FORWARD = 16


class AsitHear(HearModel):
    """ASiT encoder + Kaldi fbank behind the HEAR API (see the module docstring for the recipe)."""

    def __init__(
        self, encoder: AsitEncoder, sample_rate: int = 16000, blocks: int | Sequence[int] | None = None,
        precision: str = "fp32"
    ) -> None:
        super().__init__(precision)
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate={sample_rate}: ASiT supports {SAMPLE_RATES}")
        self.encoder = encoder
        self.frontend = KaldiFbank(sample_rate)
        self.sample_rate = sample_rate
        self.blocks = block_indices(encoder.depth, 1 if blocks is None else blocks)
        self.timestamp_embedding_size = len(self.blocks) * encoder.embed_dim
        self.scene_embedding_size = 2 * self.timestamp_embedding_size
        window, hop = frame_geometry(sample_rate)
        self.window_samples = window
        self.chunk_samples = window + (CHUNK_FRAMES - 1) * hop  # 94,960 at 16 kHz
        self.chunk_hop = CHUNK_FRAMES * hop  # 94,720 at 16 kHz: chunk grids tile the global token grid
        self.token_hop = PATCH_FRAMES * hop  # 160 ms
        self.token_centre = (window + (PATCH_FRAMES - 1) * hop) // 2  # 87.5 ms
        self.tokens_per_chunk = CHUNK_FRAMES // PATCH_FRAMES
        self.eval()

    @property
    def config(self) -> dict[str, object]:
        return {**self.encoder.config, "sample_rate": self.sample_rate, "blocks": self.blocks,
                "precision": self.precision}

    def n_tokens(self, n_samples: int) -> int:
        """Timestamp tokens of a clip: those whose centre ``160 i + 87.5`` ms is inside the audio (at least 1)."""
        if n_samples < self.token_centre:
            return 1
        return (n_samples - self.token_centre) // self.token_hop + 1

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        tokens, _ = self._embed(audio)
        hop_ms = 1000.0 * self.token_hop / self.sample_rate
        centre_ms = 1000.0 * self.token_centre / self.sample_rate
        return tokens, centred_timestamps(tokens.shape[1], hop_ms, centre_ms, audio, self.sample_rate)

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        return self._embed(audio)[1]

    def _embed(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``(tokens [B, n_tokens, L*D], scene [B, 2*L*D])`` for ``[B, N]`` audio at ``self.sample_rate``."""
        batch, n_samples = audio.shape
        if n_samples < self.window_samples:
            audio = F.pad(audio, (0, self.window_samples - n_samples))
        n_tokens = self.n_tokens(n_samples)
        n_chunks = math.ceil(n_tokens / self.tokens_per_chunk)
        n_full = min(n_chunks, max(0, (audio.shape[1] - self.chunk_samples) // self.chunk_hop + 1))
        cls_parts, column_parts = [], []
        if n_full:
            windows = audio.unfold(1, self.chunk_samples, self.chunk_hop)[:, :n_full].reshape(-1, self.chunk_samples)
            cls, columns = self._encode_waveforms(windows)
            cls_parts.append(cls.unflatten(0, (batch, n_full)))
            column_parts.append(columns.unflatten(0, (batch, n_full)))
        if n_full < n_chunks:  # the last chunk is shorter than 592 frames
            cls, columns = self._encode_waveforms(audio[:, n_full * self.chunk_hop:])
            cls_parts.append(cls.unsqueeze(1))
            column_parts.append(columns.unsqueeze(1))
        cls = torch.cat(cls_parts, dim=1)  # [B, K, L, D]
        columns = torch.cat(column_parts, dim=1).flatten(1, 2)[:, :n_tokens]  # [B, n_tokens, L, D]
        chunk_of_token = torch.arange(n_tokens, device=audio.device) // self.tokens_per_chunk
        patch_sum = torch.zeros_like(cls).index_add_(1, chunk_of_token, columns)
        tokens_in_chunk = torch.bincount(chunk_of_token, minlength=n_chunks).to(cls.dtype)
        patch_mean = patch_sum / tokens_in_chunk[None, :, None, None]
        weights = self._chunk_weights(n_samples, n_chunks).to(cls)
        scene = torch.cat([cls, patch_mean], dim=2)  # [B, K, 2L, D]
        scene = (scene * weights[None, :, None, None]).sum(dim=1) / weights.sum()
        return columns.flatten(2), scene.flatten(1)

    def _chunk_weights(self, n_samples: int, n_chunks: int) -> Tensor:
        """Real fbank frames of each chunk (at least 1): the weights of the chunk average."""
        starts = torch.arange(n_chunks, dtype=torch.long) * self.chunk_hop
        lengths = (n_samples - starts).clamp(max=self.chunk_samples)
        frames = torch.div(lengths - self.window_samples, self.frontend.hop_length, rounding_mode="floor") + 1
        return frames.clamp(min=1).float()

    def _encode_waveforms(self, waveforms: Tensor) -> tuple[Tensor, Tensor]:
        """Chunks ``[C, n <= 94,960]`` -> ``(CLS [C, L, D], frequency-averaged columns [C, 37, L, D])``, float32."""
        cls_parts, column_parts = [], []
        for start in range(0, waveforms.shape[0], CHUNKS_PER_FORWARD):
            fbank = self.frontend(waveforms[start:start + CHUNKS_PER_FORWARD])
            fbank = F.pad(fbank, (0, 0, 0, CHUNK_FRAMES - fbank.shape[1]), value=NORMALISED_PAD_VALUE)
            outputs = torch.stack(self.encoder.intermediate_layers(fbank.unsqueeze(1), self.blocks), dim=1).float()
            cls_parts.append(outputs[:, :, 0])
            grid = outputs[:, :, 1:].unflatten(2, (self.tokens_per_chunk, FREQ_PATCHES))  # [C, L, 37, 8, D]
            column_parts.append(grid.mean(dim=3).transpose(1, 2))
        return torch.cat(cls_parts), torch.cat(column_parts)


def load_model(
    model_file_path: str | os.PathLike[str] | None = None,
    *,
    sample_rate: int = 16000,
    blocks: int | Sequence[int] | None = None,
    precision: str = "fp32",
    random_weights: bool = False,
) -> AsitHear:
    """HEAR ``load_model``: the ASiT checkpoint at ``model_file_path`` (or found in ``$HEAR_ATST_WEIGHTS``).

    ``random_weights=True`` builds a randomly initialised ViT-B (768-d, 12 blocks) instead (testing only).
    """
    if require_bool("random_weights", random_weights, "asit: "):
        if model_file_path:
            raise ValueError("random_weights=True and model_file_path are mutually exclusive")
        encoder = random_encoder()
    else:
        encoder = load_encoder(resolve_weights(get_model_spec("asit"), model_file_path), "asit")
    return AsitHear(encoder, sample_rate=sample_rate, blocks=blocks, precision=precision)
