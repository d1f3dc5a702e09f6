"""HEAR module ``hear_atst.mel``: the weight-free log-mel baseline.

It is the ATST front-end with no encoder, so it measures what the encoders add:
- timestamp embeddings: the 64 log-mel bins averaged over each group of 4 frames (40 ms), on exactly the
  token grid of ATST-Frame (token ``i`` covers frames ``4i..4i+3``, centred at ``40 i + 15`` ms; trailing
  ``T % 4`` frames are dropped as the encoders drop them);
- scene embeddings: the mean and the standard deviation of every 10 ms frame, 128 values.
Audio shorter than 513 samples is zero-padded at the end (the STFT's reflect padding needs it); a clip shorter
than 240 samples (15 ms, before the first token's centre) gives one token, timestamped at the clip's midpoint (the
short-clip rule of :func:`hear_atst.hear_api.centred_timestamps`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hear_atst.frontends.atst_mel import (
    FRAMES_PER_TOKEN,
    MIN_SAMPLES,
    N_MELS,
    SAMPLE_RATE,
    TOKEN_FIRST_CENTRE_MS,
    TOKEN_HOP_MS,
    ATSTLogMel,
)
from hear_atst.hear_api import HearModel, centred_timestamps, get_scene_embeddings, get_timestamp_embeddings

__all__ = ["LogMelBaseline", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]



class LogMelBaseline(HearModel):
    """Log-mel features behind the HEAR API (no parameters)."""

    sample_rate = SAMPLE_RATE
    timestamp_embedding_size = N_MELS
    scene_embedding_size = 2 * N_MELS

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__(precision)
        self.frontend = ATSTLogMel()

    def _frames(self, audio: Tensor) -> Tensor:
        """``[B, T, 64]`` log-mel frames, computed in float32 whatever the precision option."""
        if audio.shape[-1] < MIN_SAMPLES:
            audio = torch.nn.functional.pad(audio, (0, MIN_SAMPLES - audio.shape[-1]))
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.frontend(audio)[:, 0].transpose(1, 2)

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        frames = self._frames(audio)
        n_tokens = frames.shape[1] // FRAMES_PER_TOKEN
        tokens = frames[:, : n_tokens * FRAMES_PER_TOKEN].reshape(audio.shape[0], n_tokens, FRAMES_PER_TOKEN, N_MELS)
        timestamps = centred_timestamps(n_tokens, TOKEN_HOP_MS, TOKEN_FIRST_CENTRE_MS, audio, self.sample_rate)
        return tokens.mean(dim=2), timestamps

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        frames = self._frames(audio)
        return torch.cat([frames.mean(dim=1), frames.std(dim=1, unbiased=False)], dim=-1)


def load_model(model_file_path: str | None = None, *, precision: str = "fp32") -> LogMelBaseline:
    """The log-mel baseline; it has no weights, so ``model_file_path`` must be empty."""
    if model_file_path:
        raise ValueError(f"the mel baseline has no weights; got model_file_path={model_file_path!r}")
    return LogMelBaseline(precision).eval()
