"""A ``torch.nn.Module`` frame encoder behind the HEAR API: timestamps, scene embedding, long audio in windows.

The encoder contract (``docs/own-model.md``):

- ``sample_rate`` (int, one of HEAR's rates), ``embedding_size`` (int D) and ``hop_ms`` (float, the frame hop);
- optional ``max_samples`` (int): the longest input ``forward`` takes; longer audio is cut into consecutive
  windows of that many samples (rounded down to whole hops when a hop is a whole number of samples; the last
  window shorter) and their frames are joined;
- optional ``first_centre_ms`` (float, default ``hop_ms / 2``): the centre of frame 0;
- ``forward(audio [B, T] float32) -> [B, frames, D]``.

Frame-centre rule: frame ``i`` of a window starting at sample ``s`` is centred at
``1000 * s / sample_rate + first_centre_ms + i * hop_ms`` ms. Frames centred after the end of their window (an
encoder's padding) are dropped; a window shorter than ``first_centre_ms`` keeps the one frame it may get,
timestamped at its midpoint (a last window that gets none adds none). The scene embedding is the mean of the
timestamp embeddings.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor, nn

from hear_atst.hear_api import centred_timestamps
from hear_atst.model_calls import ModelCheckError


class EncoderModel(nn.Module):
    """The HEAR model of a frame encoder: HEAR's attributes read from the encoder's contract."""

    def __init__(self, encoder: nn.Module, name: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.name = name
        self.sample_rate = _contract_int(encoder, "sample_rate", name, "the audio rate in Hz")
        self.timestamp_embedding_size = _contract_int(encoder, "embedding_size", name, "D of forward's [B, frames, D]")
        self.scene_embedding_size = self.timestamp_embedding_size
        self.hop_ms = _contract_positive(encoder, "hop_ms", name, "the frame hop in milliseconds")
        self.first_centre_ms = float(getattr(encoder, "first_centre_ms", self.hop_ms / 2))
        if not 0.0 <= self.first_centre_ms < math.inf:
            raise ModelCheckError(f"{name}: first_centre_ms={self.first_centre_ms!r}, expected a finite time >= 0")
        max_samples = getattr(encoder, "max_samples", None)
        self.max_samples = None if max_samples is None else _contract_int(encoder, "max_samples", name,
                                                                           "the longest input forward takes")


def _contract_positive(encoder: nn.Module, attribute: str, name: str, meaning: str) -> float:
    value = getattr(encoder, attribute, None)
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < float(value) < math.inf:
        raise ModelCheckError(f"{name}: the encoder's {attribute} is {value!r}; the encoder contract needs a positive "
                              f"number ({meaning})")
    return float(value)


def _contract_int(encoder: nn.Module, attribute: str, name: str, meaning: str) -> int:
    value = getattr(encoder, attribute, None)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelCheckError(f"{name}: the encoder's {attribute} is {value!r}; the encoder contract needs a positive "
                              f"int ({meaning})")
    return value


def _window_frames(model: EncoderModel, window: Tensor, start: int) -> tuple[Tensor, Tensor]:
    """The kept frames of one window and their timestamps (ms from the start of the clip)."""
    frames = model.encoder(window)
    n_sounds = window.shape[0]
    if not isinstance(frames, Tensor) or frames.ndim != 3 or frames.shape[0] != n_sounds \
            or frames.shape[2] != model.timestamp_embedding_size:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ModelCheckError(f"{model.name}: forward returned {shape} for audio {tuple(window.shape)}, expected "
                              f"({n_sounds}, frames, {model.timestamp_embedding_size}) (embedding_size)")
    duration_ms = 1000.0 * window.shape[1] / model.sample_rate
    inside = math.floor((duration_ms - model.first_centre_ms) / model.hop_ms) + 1 if duration_ms >= \
        model.first_centre_ms else 1
    kept = min(frames.shape[1], inside)
    if kept == 0:  # a tail shorter than one frame, for an encoder that does not pad
        return frames[:, :0].float(), torch.zeros(n_sounds, 0)
    offset_ms = 1000.0 * start / model.sample_rate
    times = centred_timestamps(kept, model.hop_ms, model.first_centre_ms, window, model.sample_rate).double()
    return frames[:, :kept].float(), (times + offset_ms).float()


def window_samples(model: EncoderModel, n_samples: int) -> int:
    """Samples per call: ``max_samples`` (all of the audio when unset), cut to a whole number of hops when the hop
    is a whole number of samples, so that the windows' frames continue one grid."""
    if model.max_samples is None:
        return n_samples
    hop = model.hop_ms * model.sample_rate / 1000.0
    if hop == int(hop) and model.max_samples >= hop:
        return model.max_samples - model.max_samples % int(hop)
    return model.max_samples


def get_timestamp_embeddings(audio: Tensor, model: EncoderModel) -> tuple[Tensor, Tensor]:
    """HEAR: the encoder's frames ``[n_sounds, frames, D]`` and their centres in ms ``[n_sounds, frames]``."""
    window = window_samples(model, audio.shape[1])
    pieces = [_window_frames(model, audio[:, start: start + window], start)
              for start in range(0, audio.shape[1], window)]
    embeddings = torch.cat([p[0] for p in pieces], dim=1)
    if embeddings.shape[1] == 0:
        raise ModelCheckError(f"{model.name}: forward returned no frames for audio {tuple(audio.shape)}")
    return embeddings, torch.cat([p[1].to(embeddings.device) for p in pieces], dim=1)


def get_scene_embeddings(audio: Tensor, model: EncoderModel) -> Tensor:
    """HEAR: the mean of the timestamp embeddings, ``[n_sounds, D]``."""
    return get_timestamp_embeddings(audio, model)[0].mean(dim=1)
