"""The HEAR common API shared by every model module (``hear_atst.atst_frame`` and the others).

A model module defines ``load_model(model_file_path=None, **options)`` returning a :class:`HearModel`
and re-exports :func:`get_scene_embeddings` and :func:`get_timestamp_embeddings` from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from hear_atst.registry import Precision

PRECISIONS = tuple(p.value for p in Precision)


class HearModel(nn.Module):
    """Base class: the attributes the HEAR API requires, precision handling, and input checks.

    Subclasses implement :meth:`timestamp_embeddings` and :meth:`scene_embeddings` on a checked
    ``[n_sounds, n_samples]`` float32 tensor already on the model's device.
    """

    sample_rate: int
    scene_embedding_size: int
    timestamp_embedding_size: int

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}")
        self.precision = precision

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bfloat16 autocast when ``precision="bf16"``, else nothing."""
        enabled = self.precision == "bf16"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled):
            yield

    def timestamp_embeddings(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def scene_embeddings(self, audio: Tensor) -> Tensor:
        raise NotImplementedError


def check_audio(audio: Tensor, model: HearModel) -> Tensor:
    """Validate HEAR input ``[n_sounds, n_samples]`` and move it to the model's device as float32."""
    if not isinstance(audio, Tensor):
        raise TypeError(f"audio must be a torch.Tensor [n_sounds, n_samples], got {type(audio).__name__}")
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape [n_sounds, n_samples], got {tuple(audio.shape)}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio must hold at least one sound of at least one sample, got {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise TypeError(f"audio must be floating point in [-1, 1], got {audio.dtype}")
    audio = audio.to(device=model.device, dtype=torch.float32)
    if not bool(torch.isfinite(audio).all()):
        raise ValueError("audio contains NaN or infinite samples")
    return audio


def get_timestamp_embeddings(audio: Tensor, model: HearModel) -> tuple[Tensor, Tensor]:
    """HEAR: ``(embeddings [n_sounds, n_timestamps, D], timestamps [n_sounds, n_timestamps] ms, centred)``."""
    audio = check_audio(audio, model)
    with torch.no_grad(), model.autocast():
        embeddings, timestamps = model.timestamp_embeddings(audio)
    return embeddings.float(), timestamps.float()


def get_scene_embeddings(audio: Tensor, model: HearModel) -> Tensor:
    """HEAR: ``embeddings [n_sounds, scene_embedding_size]``."""
    audio = check_audio(audio, model)
    with torch.no_grad(), model.autocast():
        embeddings = model.scene_embeddings(audio)
    return embeddings.float()


def centred_timestamps(n_frames: int, hop_ms: float, first_centre_ms: float, audio: Tensor,
                       sample_rate: int) -> Tensor:
    """``first_centre_ms + i * hop_ms`` for i in 0..n_frames-1, repeated for each sound of ``audio`` ``[B, N]``
    (float64 math, no drift).

    Short-clip rule: a clip shorter than ``first_centre_ms`` (zero-padded by the model to one frame) has a single
    frame, timestamped at the clip's midpoint, so every timestamp lies inside the audio (hear-validator errors when
    one is after its end).
    """
    duration_ms = 1000.0 * audio.shape[-1] / sample_rate
    if first_centre_ms > duration_ms:
        if n_frames != 1:
            raise ValueError(f"{n_frames} frames for a {duration_ms:g} ms clip shorter than the first centre")
        first_centre_ms = duration_ms / 2
    steps = torch.arange(n_frames, dtype=torch.float64, device=audio.device)
    times = (first_centre_ms + steps * hop_ms).to(torch.float32)
    return times.unsqueeze(0).expand(audio.shape[0], n_frames).contiguous()
