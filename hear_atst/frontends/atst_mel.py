"""The ATST front-end (ATST-Clip, ATST-Frame, ATST-C2F): 64-bin log-mel at 16 kHz, pure torch.

Reference chain (audiossl): ``MelSpectrogram(16000, f_min=60, f_max=7800, hop_length=160, win_length=1024,
n_fft=1024, n_mels=64)`` (periodic Hann, centred reflect padding, power 2, HTK mel, no filter norm) ->
``AmplitudeToDB('power', top_db=80)`` with the 80 dB floor taken per example -> fixed MinMax
``(x + 79.6482) / 130.3324 * 2 - 1`` (no clipping). Frame ``j`` is centred on sample ``160 j``; an input of
``N`` samples gives ``N // 160 + 1`` frames.

Long inputs are transformed in bounded blocks of frames (the STFT of 20 minutes would otherwise need
gigabytes); every frame is computed exactly as in the whole-clip transform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 160
N_MELS = 64
F_MIN = 60.0
F_MAX = 7800.0
TOP_DB = 80.0
AMIN = 1e-10
MINMAX_MIN = -79.6482
MINMAX_MAX = 50.6842
MIN_SAMPLES = N_FFT // 2 + 1  # reflect padding needs more samples than the pad width
FRAMES_PER_BLOCK = 4096
# The ATST token grid over these frames (ATST's patches are 4 frames wide; ``mel`` averages the same groups):
FRAMES_PER_TOKEN = 4
TOKEN_HOP_MS = FRAMES_PER_TOKEN * HOP * 1000 / SAMPLE_RATE  # 40 ms
TOKEN_FIRST_CENTRE_MS = (FRAMES_PER_TOKEN - 1) / 2 * HOP * 1000 / SAMPLE_RATE  # 15 ms: frames 0-3 centred at 0-30 ms


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular HTK-mel filters without area normalisation, ``[n_freqs, n_mels]`` (torchaudio's definition)."""

    def hz_to_mel(freq: float) -> float:
        return 2595.0 * math.log10(1.0 + freq / 700.0)

    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_points = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    freq_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    widths = freq_points[1:] - freq_points[:-1]
    slopes = freq_points.unsqueeze(0) - all_freqs.unsqueeze(1)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def n_frames(n_samples: int) -> int:
    """Mel frames for ``n_samples`` of audio."""
    return n_samples // HOP + 1


class ATSTLogMel(nn.Module):
    """``[B, N]`` waveform at 16 kHz -> ``[B, 1, 64, N // 160 + 1]`` normalised log-mel (per-example dB floor)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer(
            "mel_fb", htk_mel_filterbank(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE), persistent=False
        )

    def power_mel(self, audio: Tensor) -> Tensor:
        """Mel power spectrogram ``[B, 64, T]`` (float32), computed in bounded blocks of frames."""
        if audio.ndim != 2:
            raise ValueError(f"expected audio [B, N], got {tuple(audio.shape)}")
        if audio.shape[-1] < MIN_SAMPLES:
            raise ValueError(f"the ATST front-end needs at least {MIN_SAMPLES} samples, got {audio.shape[-1]}")
        audio = audio.float()
        padded = torch.nn.functional.pad(audio.unsqueeze(1), (N_FFT // 2, N_FFT // 2), mode="reflect").squeeze(1)
        total = n_frames(audio.shape[-1])
        blocks = []
        for first in range(0, total, FRAMES_PER_BLOCK):
            last = min(first + FRAMES_PER_BLOCK, total)
            segment = padded[:, first * HOP : (last - 1) * HOP + N_FFT]
            spec = torch.stft(segment, N_FFT, HOP, N_FFT, self.window, center=False, return_complex=True)
            power = spec.abs().pow(2.0)
            blocks.append(torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2))
        return torch.cat(blocks, dim=-1)

    def forward(self, audio: Tensor) -> Tensor:
        db = 10.0 * torch.log10(torch.clamp(self.power_mel(audio), min=AMIN))
        floor = db.amax(dim=(-2, -1), keepdim=True) - TOP_DB
        db = torch.maximum(db, floor)
        normalised = (db - MINMAX_MIN) / (MINMAX_MAX - MINMAX_MIN) * 2.0 - 1.0
        return normalised.unsqueeze(1)
