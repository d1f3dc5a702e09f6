"""``demo`` (``demo-v1-full``): a synthetic scene task built on demand, for a first result without any download.

192 one-second clips at 16 kHz, 6 classes x 32, split into 5 folds by hear-preprocess's k-fold rule. Every clip is
one sound with random parameters at a random place, over background noise at a random signal-to-noise ratio:

- tonal: ``tone`` (a harmonic tone with vibrato, 150-1000 Hz) and ``chirp`` (a glide between two random pitches);
- noise bands: ``low_noise`` (centred at 150-600 Hz) and ``high_noise`` (1.5-5 kHz);
- rhythmic: ``clicks`` (a train of short broadband clicks, 3-12 per second) and ``beeps`` (tone pulses, 2-6 per
  second).

Clip ``i`` is drawn from ``numpy.random.default_rng([SEED, i])`` alone, so the folder is the same on every machine
and run, whatever the order the clips are written in. :mod:`tasks.demo_events` is the event variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.audio import write_wav_pcm16

SUMMARY = "synthetic sounds, 6 classes (tonal, noise-band, rhythmic) over noise, 5 folds, 1 s; built here"
NEEDS = "nothing: synthesised on demand, no download"
SYNTHETIC = True

SAMPLE_RATE = 16000
SEED = 20_261_207
CLIPS_PER_CLASS = 32
CLIP_SECONDS = 1.0
SNR_DB = (-6.0, 12.0)  # sound level over the background noise, drawn per clip

CONFIG: dict[str, Any] = {
    "task_name": "demo",
    "version": "v1",
    "embedding_type": "scene",
    "prediction_type": "multiclass",
    "sample_duration": CLIP_SECONDS,
    "split_mode": "new_split_kfold",
    "nfolds": 5,
    "evaluation": ["top1_acc", "mAP", "d_prime", "aucroc"],
    "download_urls": [],
    "default_mode": "full",
    "modes": {"full": {"max_task_duration_by_fold": None}},
}

SOURCES: dict[str, tuple[Any, ...]] = {"full": ()}

Sound = Callable[[np.random.Generator, int], np.ndarray]


# ----------------------------------------------------------------------------------------------- sound generators


def _envelope(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random attack and release (5-60 ms each) on ``n`` samples."""
    ramp = np.ones(n)
    for edge in (slice(None), slice(None, None, -1)):
        width = min(n // 2, int(rng.uniform(0.005, 0.06) * SAMPLE_RATE))
        ramp[edge][:width] *= np.linspace(0.0, 1.0, width, endpoint=False)
    return ramp


def _phase(frequency: np.ndarray) -> np.ndarray:
    """The phase of an oscillator whose frequency (Hz, per sample) varies."""
    return 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE


def _harmonics(rng: np.random.Generator, frequency: np.ndarray) -> np.ndarray:
    """1-4 harmonics of ``frequency`` with random decaying amplitudes (below 7.5 kHz)."""
    phase, out = _phase(frequency), np.zeros(len(frequency))
    for k in range(1, int(rng.integers(1, 5)) + 1):
        if k * frequency.max() < 7500:
            out += rng.uniform(0.3, 1.0) / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def band_noise(rng: np.random.Generator, n: int, centre_hz: float, octaves: float) -> np.ndarray:
    """White noise shaped by a Gaussian band on the log-frequency axis (``octaves`` wide at one sigma)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequency = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
    spectrum *= np.exp(-0.5 * (np.log2(frequency / centre_hz) / octaves) ** 2)
    return np.fft.irfft(spectrum, n)


def tone(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = np.exp(rng.uniform(np.log(150), np.log(1000)))
    vibrato = 1 + rng.uniform(0, 0.02) * np.sin(_phase(np.full(n, rng.uniform(3, 7))))
    return _harmonics(rng, f0 * vibrato)


def chirp(rng: np.random.Generator, n: int) -> np.ndarray:
    start = rng.uniform(np.log(200), np.log(3000))
    end = start + rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)  # at least 0.7 octaves up or down
    return _harmonics(rng, np.exp(np.linspace(start, np.clip(end, np.log(150), np.log(3500)), n)))


def low_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return band_noise(rng, n, np.exp(rng.uniform(np.log(150), np.log(600))), rng.uniform(0.15, 0.5))


def high_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return band_noise(rng, n, np.exp(rng.uniform(np.log(1500), np.log(5000))), rng.uniform(0.15, 0.5))


def clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    rate, decay = rng.uniform(3, 12), rng.uniform(0.001, 0.004) * SAMPLE_RATE
    click = rng.standard_normal(int(6 * decay)) * np.exp(-np.arange(int(6 * decay)) / decay)
    out = np.zeros(n + len(click))
    for start in np.arange(rng.uniform(0, 1 / rate), n / SAMPLE_RATE, 1 / rate):
        at = int(start * SAMPLE_RATE)
        out[at : at + len(click)] += click
    return out[:n]


def beeps(rng: np.random.Generator, n: int) -> np.ndarray:
    rate, duty = rng.uniform(2, 6), rng.uniform(0.3, 0.6)
    gate = (np.arange(n) / SAMPLE_RATE * rate + rng.uniform(0, 1)) % 1 < duty
    smooth = np.convolve(gate.astype(float), np.hanning(int(0.01 * SAMPLE_RATE)), mode="same")
    return _harmonics(rng, np.full(n, np.exp(rng.uniform(np.log(300), np.log(2000))))) * smooth / smooth.max()


SOUNDS: dict[str, Sound] = {
    "tone": tone, "chirp": chirp, "low_noise": low_noise, "high_noise": high_noise, "clicks": clicks, "beeps": beeps,
}


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit RMS."""
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS background: white noise plus a random amount of low rumble."""
    return _unit(_unit(rng.standard_normal(n)) + rng.uniform(0, 2) * _unit(band_noise(rng, n, 100.0, 1.0)))


def place(rng: np.random.Generator, sound: np.ndarray, mix: np.ndarray, start: int, snr_db: float) -> None:
    """Add ``sound`` (enveloped, scaled to ``snr_db`` over the unit-RMS background) into ``mix`` at ``start``."""
    mix[start : start + len(sound)] += _unit(sound * _envelope(rng, len(sound))) * 10 ** (snr_db / 20)


def finish(rng: np.random.Generator, mix: np.ndarray) -> np.ndarray:
    """The mix at a random level (peak 0.2-0.8), float32."""
    return (mix / np.abs(mix).max() * rng.uniform(0.2, 0.8)).astype(np.float32)


def scene_clip(label: str, index: int) -> np.ndarray:
    """Clip ``index``: one ``label`` sound of 0.4-1 s at a random place over background noise."""
    rng = np.random.default_rng([SEED, index])
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    mix = background(rng, n)
    length = int(rng.uniform(0.4, 1.0) * n)
    place(rng, SOUNDS[label](rng, length), mix, int(rng.integers(0, n - length + 1)), rng.uniform(*SNR_DB))
    return finish(rng, mix)


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """Synthesise every clip into ``workdir`` (one row per clip, all in one pool for the k-fold split)."""
    rows = []
    for index in range(CLIPS_PER_CLASS * len(SOUNDS)):
        label = list(SOUNDS)[index % len(SOUNDS)]
        path = workdir / "audio" / f"{index:03d}_{label}.wav"
        write_wav_pcm16(path, scene_clip(label, index), SAMPLE_RATE)
        rows.append({"relpath": str(path), "label": label, "split": "train"})
    return pd.DataFrame(rows)
