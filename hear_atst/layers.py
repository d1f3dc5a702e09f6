"""Shared transformer building blocks: the one pre-norm ViT block every encoder uses.

Key names follow the authors' checkpoints (``blocks.<i>.norm1``, ``.attn.qkv``, ``.attn.proj``,
``.norm2``, ``.mlp.fc1``, ``.mlp.fc2``) so state dicts load without renaming.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-6
HEAD_DIM = 64
# Added to the attention logits of padded keys, as in the reference code. In float32 this gives
# exactly zero attention weight, so valid outputs of a padded batch equal the single-clip outputs.
PADDED_KEY_BIAS = -10000.0


def key_padding_bias(lengths: Tensor | None, n_tokens: int, dtype: torch.dtype) -> Tensor | None:
    """Additive attention bias ``[B, 1, 1, N]`` that masks keys at positions ``>= lengths``.

    Returns None when no key is padded (no mask, the fast path).
    """
    if lengths is None:
        return None
    lengths = lengths.to(torch.long)
    if bool((lengths >= n_tokens).all()):
        return None
    positions = torch.arange(n_tokens, device=lengths.device)
    padded = positions[None, :] >= lengths[:, None]
    bias = torch.zeros(padded.shape, dtype=dtype, device=lengths.device)
    bias.masked_fill_(padded, PADDED_KEY_BIAS)
    return bias[:, None, None, :]


class Attention(nn.Module):
    """Multi-head self-attention on PyTorch's fused ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_bias: Tensor | None = None) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """``fc1 -> GELU (exact erf) -> fc2``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, attn_bias: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), attn_bias)
        return x + self.mlp(self.norm2(x))


def transformer_config(kind: str, embed_dim: int, depth: int) -> dict[str, Any]:
    """The configuration every encoder built on :class:`Transformer` records first: its kind, width, depth and
    number of heads (each encoder family adds its own keys)."""
    return {"kind": kind, "embed_dim": embed_dim, "depth": depth, "num_heads": embed_dim // HEAD_DIM}


class Transformer(nn.Module):
    """A stack of :class:`Block` s that can return the outputs of selected blocks."""

    def __init__(self, dim: int, depth: int, qkv_bias: bool, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, dim // HEAD_DIM, qkv_bias, mlp_ratio) for _ in range(depth)
        )

    def forward(self, x: Tensor, attn_bias: Tensor | None, keep: Iterable[int]) -> list[Tensor]:
        """Run every block needed and return the outputs of blocks ``keep`` (0-based, ascending)."""
        keep = sorted(set(keep))
        outputs = []
        for index, block in enumerate(self.blocks[: keep[-1] + 1]):
            x = block(x, attn_bias)
            if index in keep:
                outputs.append(x)
        return outputs


def resize_pos_embed_grid(grid_embed: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """Resize a row-major ``(rows, cols)`` grid of position embeddings ``[1, rows*cols, D]``.

    Bicubic interpolation (``align_corners=False``) on the grid's own orientation: rows stay rows.
    For ASiT the rows are time and the columns frequency (time-major patch order).
    """
    if old_grid == new_grid:
        return grid_embed
    rows, cols = old_grid
    dim = grid_embed.shape[-1]
    grid = grid_embed.reshape(1, rows, cols, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(grid_embed.dtype)


def block_indices(depth: int, blocks: int | Iterable[int]) -> list[int]:
    """Resolve a block selection: an int ``n`` means the last ``n`` blocks; else explicit 0-based indices."""
    if isinstance(blocks, str | bytes | float | bool):
        raise ValueError(f"blocks={blocks!r}: give an int n (the last n blocks) or a list of 0-based block indices")
    if isinstance(blocks, int):
        if not 1 <= blocks <= depth:
            raise ValueError(f"blocks={blocks}: the encoder has {depth} blocks; choose 1..{depth}")
        return list(range(depth - blocks, depth))
    chosen = sorted(set(int(b) for b in blocks))
    if not chosen or chosen[0] < 0 or chosen[-1] >= depth:
        raise ValueError(f"blocks={chosen}: indices must be within 0..{depth - 1}")
    return chosen
