"""The audio I/O of hear-atst: read any soundfile-readable file, mix to mono, fit to a length, resample, write.

Small on purpose; every other module reads and writes audio through these functions.

- :func:`read_audio` -> ``(float32 array, sample_rate)``: ``[n]`` for mono files, ``[channels, n]`` otherwise.
  Unreadable or empty files raise :class:`AudioError` naming the file, and so does a WAV file whose header lies
  (:func:`wav_header_problem`: a data chunk longer than the file, a frame size or byte rate that contradicts the
  format), which libsndfile would decode silently as the shorter audio it holds. :func:`decode_audio` does the same
  on bytes already read (the embedding stage hashes the exact bytes it embeds).
- :func:`to_mono` averages the channels (what ffmpeg's default downmix does in hear-preprocess).
- :func:`fit_length` keeps the first ``n`` samples or appends zeros (hear-preprocess's ``apad`` + ``atrim``).
- :func:`resample` uses libsoxr "HQ" (the 20-bit precision ffmpeg's ``aresample=resampler=soxr`` uses) and returns
  ``round_half_up(n * sr_out / sr_in)`` samples, the length ffmpeg gives. Unlike ffmpeg it adds no dither, so the
  output is reproducible bit for bit.
- :func:`write_wav_pcm16` writes mono 16-bit PCM wav atomically (:func:`hear_atst.atomic.atomic_write`).
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hear_atst.atomic import atomic_write

PCM16_SCALE = 32768.0
WAV_FORMATS_WITH_PLAIN_FRAMES = {1: "PCM", 3: "IEEE float", 0xFFFE: "extensible"}  # frame = channels x sample bytes
STREAMED_SIZE = 0xFFFFFFFF  # a data size written before the length was known (ffmpeg to a pipe)


class AudioError(RuntimeError):
    """An audio file cannot be read, or holds no samples."""


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 in [-1, 1]: shape ``[n]`` (mono) or ``[channels, n]``, and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: audio file not found")
    return decode_audio(path.read_bytes(), path)


def decode_audio(data: bytes, path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """:func:`read_audio` on the bytes of ``path`` (named in errors)."""
    problem = wav_header_problem(data)
    if problem:
        raise AudioError(f"{path}: {problem}")
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    audio = audio.T
    return (audio[0] if audio.shape[0] == 1 else audio), int(sr)


def wav_header_problem(data: bytes) -> str | None:
    """What is wrong with the header of RIFF/WAVE bytes, or None (also for other formats, left to libsndfile):
    a data chunk that promises more bytes than the file holds (a truncated file), a data size that is no whole
    number of frames, or a ``fmt`` chunk whose frame size or byte rate contradicts its channels and sample width."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    position, frame_bytes = 12, None
    while position + 8 <= len(data):
        chunk, size = data[position:position + 4], int.from_bytes(data[position + 4:position + 8], "little")
        body = position + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                return f"WAV header: fmt chunk of {size} bytes is too short"
            tag, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", data[body:body + 16])
            if tag in WAV_FORMATS_WITH_PLAIN_FRAMES:
                expected = channels * ((bits + 7) // 8)
                if channels == 0 or block_align != expected or byte_rate != rate * block_align:
                    return (f"WAV header lies about the format: {WAV_FORMATS_WITH_PLAIN_FRAMES[tag]}, {channels} "
                            f"channel(s) of {bits} bits need {expected}-byte frames and {rate * expected} bytes/s, "
                            f"the header says {block_align}-byte frames and {byte_rate} bytes/s")
            frame_bytes = block_align
        elif chunk == b"data":
            if frame_bytes is None:
                return "WAV header: data chunk before the fmt chunk"
            available = len(data) - body
            if size == STREAMED_SIZE or frame_bytes == 0:
                return None
            if size > available:
                return (f"truncated WAV: the header promises {size // frame_bytes} frames ({size} bytes), the file "
                        f"holds {available // frame_bytes} ({available} bytes)")
            if size % frame_bytes:
                return f"WAV header: a data chunk of {size} bytes is no whole number of {frame_bytes}-byte frames"
            return None
        position = body + size + (size & 1)
    return "WAV header: no data chunk" if frame_bytes is not None else "WAV header: no fmt chunk"


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
