"""The audio I/O of hear-atst: read any soundfile-readable file, mix to mono, fit to a length, resample, write.

Small on purpose; every other module reads and writes audio through these five functions.

- :func:`read_audio` -> ``(float32 array, sample_rate)``: ``[n]`` for mono files, ``[channels, n]`` otherwise.
  Unreadable or empty files raise :class:`AudioError` naming the file.
- :func:`to_mono` averages the channels (what ffmpeg's default downmix does in hear-preprocess).
- :func:`fit_length` keeps the first ``n`` samples or appends zeros (hear-preprocess's ``apad`` + ``atrim``).
- :func:`resample` uses libsoxr "HQ" (the 20-bit precision ffmpeg's ``aresample=resampler=soxr`` uses) and returns
  ``round_half_up(n * sr_out / sr_in)`` samples, the length ffmpeg gives. Unlike ffmpeg it adds no dither, so the
  output is reproducible bit for bit.
- :func:`write_wav_pcm16` writes mono 16-bit PCM wav atomically (:func:`hear_atst.atomic.atomic_write`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hear_atst.atomic import atomic_write

PCM16_SCALE = 32768.0


class AudioError(RuntimeError):
    """An audio file cannot be read, or holds no samples."""


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 in [-1, 1]: shape ``[n]`` (mono) or ``[channels, n]``, and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: audio file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    data = data.T
    return (data[0] if data.shape[0] == 1 else data), int(sr)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average ``[channels, n]`` to ``[n]``; a 1-D array is returned as is."""
    return audio if audio.ndim == 1 else audio.mean(axis=0, dtype=np.float32)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Keep the first ``n`` samples along the last axis, or append zeros up to ``n``."""
    have = audio.shape[-1]
    if have >= n:
        return audio[..., :n]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, n - have)]
    return np.pad(audio, pad)


def resampled_length(n: int, sr_in: int, sr_out: int) -> int:
    """``round(n * sr_out / sr_in)`` with halves rounded up (exact integer arithmetic)."""
    return (2 * n * sr_out + sr_in) // (2 * sr_in)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono float audio with libsoxr HQ to exactly :func:`resampled_length` samples."""
    if sr_in == sr_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio, dtype=np.float32), sr_in, sr_out, quality="HQ")
    return fit_length(out.astype(np.float32, copy=False), resampled_length(audio.shape[-1], sr_in, sr_out))


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Quantise float audio to int16 (round to nearest, clip to the int16 range)."""
    return np.clip(np.rint(audio * PCM16_SCALE), -32768, 32767).astype(np.int16)


def write_wav_pcm16(path: str | os.PathLike[str], audio: np.ndarray, sr: int) -> None:
    """Write mono audio (float in [-1, 1] or int16) as 16-bit PCM wav, atomically."""
    path = Path(path)
    if audio.ndim != 1:
        raise ValueError(f"{path}: expected mono audio [n], got shape {audio.shape}")
    samples = audio if audio.dtype == np.int16 else to_pcm16(audio)
    with atomic_write(path) as handle:
        sf.write(handle, samples, sr, subtype="PCM_16", format="WAV")
