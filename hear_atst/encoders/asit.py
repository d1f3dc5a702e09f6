"""ASiT's encoder: a ViT with 16x16 patches on the ``(time, 128 mel)`` Kaldi fbank, and its checkpoint loader.

Architecture (ASiT ``vision_transformer.py``, ``vit_base``): ``Conv2d(1, D, 16, stride 16)`` on ``[B, 1, T, 128]``
(time on the H axis), patches in **time-major** order (t0f0..t0f7, t1f0, ...), a CLS token, learned ``pos_embed``
for CLS + a 37 x 8 grid (592 frames x 128 bins), pre-norm blocks with qkv bias, final LayerNorm on every token.
Trailing frames that do not fill a 16-frame patch are dropped, as in the reference.

Inputs of another length (the reference accepts only 592 frames): fewer than 37 patch rows use the first
``rows * 8`` grid positions unchanged (exact, thanks to the time-major order); more rows use a bicubic resize of the
(37, 8) grid along time (``resize_pos_embed_grid``, rows = time; unlike PretrainedSED, which reads the grid as
(8, 37) and scrambles it). The HEAR module only ever feeds 592-frame windows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from hear_atst.checkpoints import CheckpointError
from hear_atst.layers import HEAD_DIM, LAYER_NORM_EPS, Transformer, resize_pos_embed_grid, transformer_config

KINDS = ("asit",)
PATCH_SIZE = 16
N_MELS = 128
PRETRAIN_FRAMES = 592
POS_GRID = (PRETRAIN_FRAMES // PATCH_SIZE, N_MELS // PATCH_SIZE)  # (37 time rows, 8 frequency columns)
MLP_RATIO = 4.0

# Checkpoint layouts: sub-dicts tried in this order, prefixes stripped, non-encoder heads dropped.
STATE_KEYS = ("teacher", "student", "model", "state_dict")
STRIP_PREFIXES = ("module.", "backbone.", "model.", "asit.")
DROP_PREFIXES = ("head_cls.", "head_recons.", "head.", "strong_head.", "weak_head.", "seq_model.")
BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")


class PatchEmbed(nn.Module):
    """Non-overlapping 16x16 patches of ``[B, 1, T, F]`` -> ``[B, (T//16) * (F//16), D]``, time-major."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class AsitEncoder(Transformer):
    """ASiT ViT. Key names equal the official state dict (``blocks.*`` come from :class:`Transformer`)."""

    kind = "asit"

    def __init__(self, embed_dim: int, depth: int) -> None:
        super().__init__(embed_dim, depth, qkv_bias=True, mlp_ratio=MLP_RATIO)
        self.embed_dim = embed_dim
        self.depth = depth
        self.patch_embed = PatchEmbed(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + POS_GRID[0] * POS_GRID[1], embed_dim))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    @property
    def config(self) -> dict[str, Any]:
        return {
            **transformer_config(self.kind, self.embed_dim, self.depth),
            "patch_size": PATCH_SIZE,
            "n_mels": N_MELS,
            "pos_grid": list(POS_GRID),
            "qkv_bias": True,
            "mlp_ratio": MLP_RATIO,
        }

    def patch_pos_embed(self, rows: int) -> Tensor:
        """Position embeddings of ``rows x 8`` patches (time-major): sliced when ``rows <= 37``, else resized."""
        grid = self.pos_embed[:, 1:]
        if rows <= POS_GRID[0]:
            return grid[:, : rows * POS_GRID[1]]
        return resize_pos_embed_grid(grid, POS_GRID, (rows, POS_GRID[1]))

    def intermediate_layers(self, fbank: Tensor, blocks: Iterable[int]) -> list[Tensor]:
        """Outputs ``[B, 1 + rows * 8, D]`` (CLS first) of the selected 0-based blocks, each after the final norm.

        ``fbank``: normalised log-mel ``[B, 1, T, 128]`` with T >= 16.
        """
        if fbank.ndim != 4 or fbank.shape[1] != 1 or fbank.shape[3] != N_MELS or fbank.shape[2] < PATCH_SIZE:
            raise ValueError(f"ASiT expects fbank [B, 1, T>={PATCH_SIZE}, {N_MELS}], got {tuple(fbank.shape)}")
        rows = fbank.shape[2] // PATCH_SIZE
        patches = self.patch_embed(fbank[:, :, : rows * PATCH_SIZE])
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(patches.shape[0], -1, -1)
        tokens = torch.cat([cls, patches + self.patch_pos_embed(rows)], dim=1)
        return [self.norm(out) for out in super().forward(tokens, None, blocks)]

    def forward(self, fbank: Tensor) -> Tensor:  # type: ignore[override]
        """All tokens of the last block after the final norm, ``[B, 1 + rows * 8, D]`` (the reference output)."""
        return self.intermediate_layers(fbank, [self.depth - 1])[0]


def encoder_shapes(embed_dim: int, depth: int) -> dict[str, tuple[int, ...]]:
    """Every key and shape of an ASiT encoder state dict (4 + 12 * depth + 2 tensors)."""
    hidden = int(embed_dim * MLP_RATIO)
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, embed_dim),
        "pos_embed": (1, 1 + POS_GRID[0] * POS_GRID[1], embed_dim),
        "patch_embed.proj.weight": (embed_dim, 1, PATCH_SIZE, PATCH_SIZE),
        "patch_embed.proj.bias": (embed_dim,),
    }
    for index in range(depth):
        block = f"blocks.{index}."
        shapes |= {
            block + "norm1.weight": (embed_dim,), block + "norm1.bias": (embed_dim,),
            block + "attn.qkv.weight": (3 * embed_dim, embed_dim), block + "attn.qkv.bias": (3 * embed_dim,),
            block + "attn.proj.weight": (embed_dim, embed_dim), block + "attn.proj.bias": (embed_dim,),
            block + "norm2.weight": (embed_dim,), block + "norm2.bias": (embed_dim,),
            block + "mlp.fc1.weight": (hidden, embed_dim), block + "mlp.fc1.bias": (hidden,),
            block + "mlp.fc2.weight": (embed_dim, hidden), block + "mlp.fc2.bias": (embed_dim,),
        }
    shapes |= {"norm.weight": (embed_dim,), "norm.bias": (embed_dim,)}
    return shapes


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"encoder kind {kind!r} is not an ASiT kind {KINDS}")


def _strip(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def _select_state(checkpoint: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{source}: expected a state dict or a dict of state dicts, got {type(checkpoint).__name__}"
        )
    for key in STATE_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _dims(state: Mapping[str, Tensor], source: str) -> tuple[int, int]:
    pos_embed = state.get("pos_embed")
    if not isinstance(pos_embed, Tensor) or pos_embed.ndim != 3:
        raise CheckpointError(
            f"{source}: not an ASiT encoder: no pos_embed [1, 297, D] after stripping prefixes "
            f"{STRIP_PREFIXES}; found keys {sorted(state)[:8]}{' ...' if len(state) > 8 else ''}"
        )
    blocks = {int(match.group(1)) for key in state if (match := BLOCK_KEY.match(key))}
    return int(pos_embed.shape[-1]), (max(blocks) + 1 if blocks else 0)


def extract_encoder_state(checkpoint: Any, kind: str, source: str) -> dict[str, Tensor]:
    """The ASiT encoder tensors of a loaded checkpoint, validated key by key and shape by shape.

    Accepts a raw state dict or ``{teacher|student|model|state_dict: ...}`` (teacher preferred), strips the
    leading ``module.``/``backbone.``/``model.``/``asit.`` prefixes and drops the SSL and fine-tuning heads.
    Raises :class:`CheckpointError` naming ``source`` and what was expected/found.
    """
    _check_kind(kind)
    state = {
        _strip(key): value
        for key, value in _select_state(checkpoint, source).items()
        if not _strip(key).startswith(DROP_PREFIXES)
    }
    return _validated(state, source)


def _validated(state: Mapping[str, Any], source: str) -> dict[str, Tensor]:
    """``state`` in canonical key order if it is exactly an ASiT encoder state dict; else :class:`CheckpointError`."""
    embed_dim, depth = _dims(state, source)
    expected = encoder_shapes(embed_dim, depth)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{key}: {tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__} "
        f"(expected {expected[key]})"
        for key, value in state.items()
        if key in expected and (not isinstance(value, Tensor) or tuple(value.shape) != expected[key])
    ]
    if missing or unexpected or wrong or embed_dim % HEAD_DIM or depth == 0:
        problems = [
            f"{name} ({len(items)}): {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
            for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        ]
        if embed_dim % HEAD_DIM:
            problems.append(f"embed_dim {embed_dim} is not a multiple of the head dim {HEAD_DIM}")
        if depth == 0:
            problems.append("no transformer blocks")
        raise CheckpointError(
            f"{source}: not an ASiT encoder of embed_dim {embed_dim} and depth {depth} "
            f"({len(expected)} tensors expected, {len(state)} found): " + "; ".join(problems)
        )
    return {key: state[key] for key in expected}


def build_encoder(kind: str, state: Mapping[str, Tensor]) -> AsitEncoder:
    """An :class:`AsitEncoder` sized from the shapes of ``state`` (canonical encoder keys), strictly loaded, eval().

    The module is created on the meta device and the checkpoint tensors are assigned to it (float32), so loading
    never holds two copies of the weights and spends no time on a random initialisation.
    """
    _check_kind(kind)
    state = _validated(state, "ASiT state dict")
    embed_dim, depth = _dims(state, "ASiT state dict")
    with torch.device("meta"):
        encoder = AsitEncoder(embed_dim, depth)
    state = {key: value if value.dtype == torch.float32 else value.float() for key, value in state.items()}
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval()


def random_encoder(embed_dim: int = 768, depth: int = 12, seed: int = 0) -> AsitEncoder:
    """A randomly initialised encoder (testing only): default layers, CLS and pos_embed ~ N(0, 0.02) truncated."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = AsitEncoder(embed_dim, depth)
        nn.init.trunc_normal_(encoder.cls_token, std=0.02)
        nn.init.trunc_normal_(encoder.pos_embed, std=0.02)
    return encoder.eval()
