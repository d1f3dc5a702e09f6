"""ASiT's front end: Kaldi-compatible log-mel filterbank ("fbank"), normalised with AST's AudioSet statistics.

A pure-torch port of the algorithm behind ``torchaudio.compliance.kaldi.fbank`` with the arguments ASiT uses
(``htk_compat=True, use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10``;
all others default), computed in float32 like torchaudio. Against torchaudio's output (the fixtures) the median
difference is ~1e-7 and over 99.8 % of the values agree to 1e-5, but low-energy values near the float32-eps floor
(mostly low mel bins of quiet frames) differ by up to 2.5e-4 (measured): the FFT rounds differently between
machines and the log magnifies it there. The fixtures README allows 5e-4 for an independent implementation.
Steps:

1. remove the waveform mean (ASiT does this before calling ``fbank``);
2. frames of 25 ms every 10 ms, ``snip_edges`` (``1 + (N - window) // hop`` frames, none if N < window);
3. per frame: remove the DC offset, preemphasis 0.97 (the first sample is its own predecessor), symmetric Hann
   window (``periodic=False``), zero-pad to the next power of two (512 at 16 kHz, 1024 at 32 kHz);
4. power spectrum, 128 triangular Kaldi-mel filters (``mel = 1127 ln(1 + f / 700)``) from 20 Hz to Nyquist;
5. ``ln(max(energy, float32 eps))``, then ``(x - mean) / (2 std)`` with ``mean = -4.2677393``, ``std = 4.5689974``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
PREEMPHASIS = 0.97
N_MELS = 128
LOW_FREQ_HZ = 20.0
# AST's AudioSet statistics, used by ASiT's pretraining; the "* 2" gives features with std ~0.5.
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974
# The log-mel value ASiT's pretraining pads with (ZeroPad2d before normalisation), after normalisation: ~0.467.
PAD_LOG_MEL = 0.0


def normalise(log_mel: Tensor | float) -> Tensor | float:
    """AST/ASiT normalisation ``(x - mean) / (2 std)``."""
    return (log_mel - FBANK_MEAN) / (FBANK_STD * 2)


NORMALISED_PAD_VALUE = normalise(PAD_LOG_MEL)


def kaldi_mel_scale(freq: Tensor | float) -> Tensor | float:
    """Kaldi's mel scale ``1127 ln(1 + f / 700)``."""
    if isinstance(freq, Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: int, low_freq: float) -> Tensor:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` on the Kaldi mel scale, low_freq to Nyquist (float32).

    The Nyquist bin gets weight 0, as in Kaldi/torchaudio.
    """
    fft_bin_width = sample_rate / n_fft
    mel_low = kaldi_mel_scale(low_freq)
    mel_high = kaldi_mel_scale(0.5 * sample_rate)
    mel_delta = (mel_high - mel_low) / (n_mels + 1)
    index = torch.arange(n_mels, dtype=torch.float32).unsqueeze(1)
    left = mel_low + index * mel_delta
    centre = mel_low + (index + 1.0) * mel_delta
    right = mel_low + (index + 2.0) * mel_delta
    mel = kaldi_mel_scale(fft_bin_width * torch.arange(n_fft // 2, dtype=torch.float32)).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


def n_frames(n_samples: int, sample_rate: int) -> int:
    """Number of Kaldi frames (``snip_edges=True``) of ``n_samples`` samples: 0 when shorter than one window."""
    window, hop = frame_geometry(sample_rate)
    return 0 if n_samples < window else 1 + (n_samples - window) // hop


def frame_geometry(sample_rate: int) -> tuple[int, int]:
    """``(window, hop)`` in samples: 25 ms and 10 ms."""
    return int(sample_rate * FRAME_LENGTH_MS * 0.001), int(sample_rate * FRAME_SHIFT_MS * 0.001)


class KaldiFbank(nn.Module):
    """``[B, N]`` waveforms -> normalised log-mel ``[B, T, 128]``, each clip's waveform mean removed separately.

    Always computes in float32 (autocast is disabled inside), whatever precision the encoder runs in.
    """

    def __init__(self, sample_rate: int, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.window_length, self.hop_length = frame_geometry(sample_rate)
        self.n_fft = 1 << (self.window_length - 1).bit_length()
        self.register_buffer(
            "window", torch.hann_window(self.window_length, periodic=False, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "mel_banks", kaldi_mel_banks(n_mels, self.n_fft, sample_rate, LOW_FREQ_HZ), persistent=False
        )

    def n_frames(self, n_samples: int) -> int:
        return n_frames(n_samples, self.sample_rate)

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be [batch, samples], got {tuple(waveform.shape)}")
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return self._fbank(waveform.float())

    def _fbank(self, waveform: Tensor) -> Tensor:
        batch = waveform.shape[0]
        frames_count = self.n_frames(waveform.shape[1])
        if frames_count == 0:
            return waveform.new_zeros(batch, 0, self.mel_banks.shape[0])
        waveform = waveform - waveform.mean(dim=1, keepdim=True)
        frames = waveform.unfold(1, self.window_length, self.hop_length)
        frames = frames - frames.mean(dim=2, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=2)
        frames = (frames - PREEMPHASIS * previous) * self.window
        frames = F.pad(frames, (0, self.n_fft - self.window_length))
        power = torch.fft.rfft(frames).abs().pow(2.0)
        energies = torch.matmul(power, self.mel_banks.T)
        log_mel = torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()
        return normalise(log_mel).reshape(batch, frames_count, -1)
