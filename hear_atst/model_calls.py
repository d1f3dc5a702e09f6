"""Calling a model that is not this project's: its exceptions named as its own, its outputs checked on every call.

:class:`CheckedApi` stands where a HEAR module stands (``get_scene_embeddings``, ``get_timestamp_embeddings``) and
calls the model's functions under ``torch.no_grad()`` (and bfloat16 autocast when asked), then checks what they
return against the HEAR API: types, shapes, float32, finite values, declared sizes, timestamps increasing and inside
the audio. A malformed output raises :class:`ModelCheckError` (one line, naming the model and the problem); an
exception inside the model's code raises :class:`ModelRaised` ("the model raised ...", with a short traceback whose
bottom frame is the model's own).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

MAX_TRACEBACK_FRAMES = 5


class ModelCheckError(ValueError):
    """A model's output (or attribute) breaks the HEAR API."""


class ModelRaised(ValueError):
    """An exception raised inside the model's own code."""


def _is_under(filename: str, roots: Sequence[Path]) -> bool:
    path = Path(filename).resolve()
    return any(path == root or root in path.parents for root in roots)


def describe_raised(error: BaseException, code_roots: Sequence[Path]) -> str:
    """``the model raised <Type>: <message>`` and the traceback's frames from the first to the last frame inside
    ``code_roots`` (the model's files or package folders), at most :data:`MAX_TRACEBACK_FRAMES`."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [index for index, frame in enumerate(frames) if _is_under(frame.filename, code_roots)]
    shown = frames[inside[0]: inside[-1] + 1] if inside else frames
    lines = "".join(traceback.format_list(shown[-MAX_TRACEBACK_FRAMES:])).rstrip()
    return f"the model raised {type(error).__name__}: {error}\n{lines}"


@contextlib.contextmanager
def model_code(code_roots: Sequence[Path]) -> Iterator[None]:
    """Turn any exception raised inside the block (the model's code) into :class:`ModelRaised`."""
    try:
        yield
    except (ModelRaised, ModelCheckError):
        raise
    except Exception as error:  # whatever the model raises is the model's, reported as such
        raise ModelRaised(describe_raised(error, code_roots)) from error


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU when it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_scene(name: str, audio: Tensor, out: Any, size: int) -> Tensor:
    """``out`` of ``get_scene_embeddings(audio)``: a finite float32 tensor ``[n_sounds, size]``."""
    if not isinstance(out, Tensor):
        raise ModelCheckError(f"{name}: get_scene_embeddings returned {type(out).__name__}, expected a Tensor")
    if out.dtype != torch.float32 or tuple(out.shape) != (audio.shape[0], size):
        raise ModelCheckError(f"{name}: get_scene_embeddings returned {out.dtype} {tuple(out.shape)} for "
                              f"{audio.shape[0]} clips, expected float32 ({audio.shape[0]}, {size}) "
                              "(scene_embedding_size)")
    if not bool(torch.isfinite(out).all()):
        raise ModelCheckError(f"{name}: get_scene_embeddings returned NaN or infinite values")
    return out


def check_timestamp(name: str, audio: Tensor, out: Any, size: int, sample_rate: int) -> tuple[Tensor, Tensor]:
    """``out`` of ``get_timestamp_embeddings(audio)``: finite float32 ``[n_sounds, T, size]`` embeddings and float32
    ``[n_sounds, T]`` timestamps (ms), T >= 1, strictly increasing, within the audio (to half a sample)."""
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        raise ModelCheckError(f"{name}: get_timestamp_embeddings returned {type(out).__name__}, expected a "
                              "(Tensor, Tensor) tuple")
    embeddings, stamps = out
    n_sounds = audio.shape[0]
    if embeddings.dtype != torch.float32 or stamps.dtype != torch.float32:
        raise ModelCheckError(f"{name}: get_timestamp_embeddings returned {embeddings.dtype} embeddings and "
                              f"{stamps.dtype} timestamps, expected float32 and float32")
    if (embeddings.ndim != 3 or stamps.ndim != 2 or embeddings.shape[0] != n_sounds or embeddings.shape[2] != size
            or tuple(stamps.shape) != tuple(embeddings.shape[:2]) or embeddings.shape[1] == 0):
        raise ModelCheckError(f"{name}: get_timestamp_embeddings returned embeddings {tuple(embeddings.shape)} and "
                              f"timestamps {tuple(stamps.shape)} for {n_sounds} clips, expected ({n_sounds}, T, "
                              f"{size}) (timestamp_embedding_size) and ({n_sounds}, T) with T >= 1")
    if not bool(torch.isfinite(embeddings).all()):
        raise ModelCheckError(f"{name}: get_timestamp_embeddings returned NaN or infinite embeddings")
    times = stamps.double()
    if times.shape[1] > 1 and not bool((times.diff(dim=1) > 0).all()):
        raise ModelCheckError(f"{name}: get_timestamp_embeddings returned timestamps that do not increase: "
                              f"{_first_values(times[0])}")
    duration_ms = 1000.0 * audio.shape[1] / sample_rate
    slack = 500.0 / sample_rate  # half a sample
    if not bool(torch.isfinite(times).all()) or float(times.min()) < -slack or float(times.max()) > duration_ms + slack:
        raise ModelCheckError(f"{name}: get_timestamp_embeddings returned timestamps outside the audio: "
                              f"{float(times.min()):g} to {float(times.max()):g} ms for a {duration_ms:g} ms clip "
                              "(timestamps are frame centres in milliseconds, 0 <= t <= duration)")
    return embeddings, stamps


def _first_values(row: Tensor) -> str:
    return ", ".join(f"{float(t):g}" for t in row[:6]) + (" ..." if len(row) > 6 else "")


class CheckedApi:
    """A model's two HEAR embedding functions, called under ``no_grad`` (and bfloat16 autocast when ``autocast``),
    their exceptions reported as the model's and their outputs checked (:func:`check_scene`, :func:`check_timestamp`).
    """

    def __init__(self, name: str, scene: Callable[..., Any], timestamp: Callable[..., Any],
                 code_roots: Sequence[Path], autocast: bool = False) -> None:
        self.name = name
        self._scene = scene
        self._timestamp = timestamp
        self.code_roots = tuple(code_roots)
        self.autocast = autocast

    @contextlib.contextmanager
    def _calling(self, model: nn.Module) -> Iterator[None]:
        device = model_device(model)
        with model_code(self.code_roots), torch.no_grad(), torch.autocast(
                device_type=device.type, dtype=torch.bfloat16, enabled=self.autocast):
            yield

    def _float32(self, tensor: Any) -> Any:
        """Under autocast only: a floating tensor back in float32 (exact for bfloat16)."""
        if self.autocast and isinstance(tensor, Tensor) and tensor.is_floating_point():
            return tensor.float()
        return tensor

    def get_scene_embeddings(self, audio: Tensor, model: nn.Module) -> Tensor:
        with self._calling(model):
            out = self._scene(audio, model)
        return check_scene(self.name, audio, self._float32(out), int(model.scene_embedding_size))

    def get_timestamp_embeddings(self, audio: Tensor, model: nn.Module) -> tuple[Tensor, Tensor]:
        with self._calling(model):
            out = self._timestamp(audio, model)
        if isinstance(out, tuple):
            out = tuple(self._float32(t) for t in out)
        return check_timestamp(self.name, audio, out, int(model.timestamp_embedding_size), int(model.sample_rate))
