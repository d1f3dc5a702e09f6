"""The quick HEAR-API check a model from elsewhere passes before a task is embedded (a second or two).

It verifies: ``load_model`` gave a ``torch.nn.Module`` whose ``sample_rate`` is one of HEAR's rates and whose
``scene_embedding_size`` and ``timestamp_embedding_size`` are positive ints; on a batch of two 1.5 s clips of
different content (noise and a tone), both embedding functions return what :mod:`hear_atst.model_calls` checks
(types, float32, shapes with the declared sizes, finite values, timestamps increasing and inside the audio), the two
clips' timestamps agree and their embeddings differ. The first problem raises :class:`ModelCheckError` (one line);
an exception inside the model raises :class:`~hear_atst.model_calls.ModelRaised`. ``hear-atst validate`` is the
thorough check.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hear_atst.model_calls import CheckedApi, ModelCheckError, model_device
from hear_atst.validate import HEAR_SAMPLE_RATES

CLIP_SECONDS = 1.5
TONE_HZ = 440.0


def check_attributes(name: str, model: object) -> None:
    """A ``torch.nn.Module`` with a HEAR sample rate and positive int embedding sizes."""
    if not isinstance(model, nn.Module):
        raise ModelCheckError(f"{name}: load_model returned {type(model).__name__}, expected a torch.nn.Module")
    rate = getattr(model, "sample_rate", None)
    if rate not in HEAR_SAMPLE_RATES or isinstance(rate, bool):
        raise ModelCheckError(f"{name}: sample_rate is {rate!r}, expected one of HEAR's {HEAR_SAMPLE_RATES}")
    for attribute in ("scene_embedding_size", "timestamp_embedding_size"):
        value = getattr(model, attribute, None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelCheckError(f"{name}: {attribute} is {value!r}, expected a positive int")


def two_clips(sample_rate: int) -> torch.Tensor:
    """``[2, n]``: uniform noise (seeded) and a 440 Hz tone, :data:`CLIP_SECONDS` long."""
    n = int(CLIP_SECONDS * sample_rate)
    noise = torch.rand(n, generator=torch.Generator().manual_seed(0)) * 0.5 - 0.25
    tone = 0.5 * torch.sin(2 * math.pi * TONE_HZ * torch.arange(n, dtype=torch.float64) / sample_rate).float()
    return torch.stack([noise, tone])


def preflight(api: CheckedApi, model: nn.Module) -> None:
    """Raise on the first way ``model`` (through ``api``) breaks the HEAR API; return quietly otherwise."""
    check_attributes(api.name, model)
    audio = two_clips(int(model.sample_rate)).to(model_device(model))
    embeddings, stamps = api.get_timestamp_embeddings(audio, model)
    if not torch.equal(stamps[0], stamps[1]):
        raise ModelCheckError(f"{api.name}: get_timestamp_embeddings gave two clips of one length different "
                              "timestamps")
    scene = api.get_scene_embeddings(audio, model)
    for what, output in (("get_timestamp_embeddings", embeddings), ("get_scene_embeddings", scene)):
        if torch.equal(output[0], output[1]):
            raise ModelCheckError(f"{api.name}: {what} returned the same embedding for two different clips (noise "
                                  "and a tone)")
