"""ATST-Clip (``AST``) and ATST-Frame (``FrameAST``) encoders, audiossl ``ec3a14d`` (spec: docs/atst.md §2).

Both share the patching (64 mel x 4 frames -> Linear(256, D)), the :class:`hear_atst.layers.Transformer` blocks
and a 251-slot position table. ATST-Clip prepends a CLS token and adds ``pos_embed[:, :P+1]``; ATST-Frame has no
CLS token and adds ``pos_embed[:, 1:P+1]`` (slot 0 is never read). The final LayerNorm is ``norm`` (clip) or
``norm_frame`` (frame) and is applied to every selected block output. State-dict keys are the authors' names, so
official encoder weights load strictly without renaming.

ATST-C2F is not an architecture of its own: its encoder is a ``FrameAST`` (the distillation student).

The family interface used by :mod:`hear_atst.encoders` (``KINDS``, ``extract_encoder_state``, ``build_encoder``)
is at the end of this module; the checkpoint layouts live in :mod:`hear_atst.encoders.atst_checkpoints`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hear_atst.checkpoints import CheckpointError, check_state_dict
from hear_atst.encoders.atst_checkpoints import select_encoder_state
from hear_atst.frontends.atst_mel import FRAMES_PER_TOKEN, N_MELS
from hear_atst.layers import (
    HEAD_DIM,
    LAYER_NORM_EPS,
    Transformer,
    block_indices,
    key_padding_bias,
    transformer_config,
)

PATCH_FRAMES = FRAMES_PER_TOKEN  # a patch (token) is 4 frames of 10 ms: one token per 40 ms (TOKEN_HOP_MS)
PATCH_DIM = N_MELS * PATCH_FRAMES  # 256
POS_EMBED_SLOTS = 251  # CLS slot + (1001 // 4) patch slots, in every released checkpoint
SIZES = {"small": (384, 12), "base": (768, 12)}  # name -> (embed_dim, depth); heads = embed_dim // 64

KINDS: tuple[str, ...] = ("atst_clip", "atst_frame", "atst_c2f")
ARCHITECTURE = {"atst_clip": "atst_clip", "atst_frame": "atst_frame", "atst_c2f": "atst_frame"}


def patch_lengths(frame_lengths: Tensor) -> Tensor:
    """Valid patches per example: ``(len - len % 4) // 4`` (a trailing partial patch is dropped)."""
    frame_lengths = frame_lengths.to(torch.long)
    return (frame_lengths - frame_lengths % PATCH_FRAMES) // PATCH_FRAMES


class PatchEmbed(nn.Module):
    """64x4 patches of ``[B, 1, 64, T]`` as 256-vectors (mel-major, frame-minor) -> ``Linear(256, D)``.

    The trailing ``T % 4`` frames are dropped. Key: ``patch_embed.patch_embed.*`` (reference ``PatchEmbed_v2``).
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.patch_embed = nn.Linear(PATCH_DIM, embed_dim)

    def forward(self, mel: Tensor) -> Tensor:
        batch, _, n_mels, frames = mel.shape
        n_patches = frames // PATCH_FRAMES
        patches = mel[..., : n_patches * PATCH_FRAMES].reshape(batch, n_mels, n_patches, PATCH_FRAMES)
        # [B, 64, P, 4] -> [B, P, 64, 4]: vector index = mel * 4 + frame
        return self.patch_embed(patches.permute(0, 2, 1, 3).reshape(batch, n_patches, PATCH_DIM))


class ATSTEncoder(Transformer):
    """Common ATST encoder: patches + positions -> blocks -> final norm. Use :class:`AST` or :class:`FrameAST`.

    The encoder *is* the block stack (it extends :class:`~hear_atst.layers.Transformer`), which keeps the
    reference key names ``blocks.<i>.*`` at the top level of the state dict.
    """

    kind: str
    has_cls: bool
    norm_name: str  # attribute (and state-dict prefix) of the final LayerNorm

    def __init__(self, embed_dim: int, depth: int, pos_embed_slots: int = POS_EMBED_SLOTS) -> None:
        if embed_dim % HEAD_DIM:
            raise ValueError(f"embed_dim={embed_dim} must be a multiple of the head size {HEAD_DIM}")
        super().__init__(embed_dim, depth, qkv_bias=False)
        self.embed_dim = embed_dim
        self.depth = depth
        self.max_patches = pos_embed_slots - 1
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_embed_slots, embed_dim))
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))  # pretraining masking only; kept for strict loads
        self.add_module(self.norm_name, nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS))
        self.n_cls = 1 if self.has_cls else 0

    @property
    def final_norm(self) -> nn.LayerNorm:
        return getattr(self, self.norm_name)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description that :func:`encoder_from_config` rebuilds the module from."""
        return {
            **transformer_config(self.kind, self.embed_dim, self.depth),
            "pos_embed_slots": self.max_patches + 1,
        }

    def reset_parameters(self) -> None:
        """Reference random init: truncated normal (std .02) tables and Linear weights, zero biases, unit norms."""
        for tensor in (self.pos_embed, self.mask_embed, *([self.cls_token] if self.has_cls else [])):
            nn.init.trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def tokens(self, mel: Tensor) -> Tensor:
        """Patch embeddings plus positions (with the CLS token first for ATST-Clip): ``[B, n_cls + T//4, D]``."""
        if mel.ndim != 4 or mel.shape[1] != 1 or mel.shape[2] != N_MELS:
            raise ValueError(f"mel must have shape [B, 1, {N_MELS}, T], got {tuple(mel.shape)}")
        n_patches = mel.shape[-1] // PATCH_FRAMES
        if n_patches < 1:
            raise ValueError(f"mel has {mel.shape[-1]} frames: at least {PATCH_FRAMES} (one patch) are needed")
        if n_patches > self.max_patches:
            raise ValueError(
                f"mel has {mel.shape[-1]} frames = {n_patches} patches, but {self.kind} takes at most "
                f"{self.max_patches} patches ({self.max_patches * PATCH_FRAMES + PATCH_FRAMES - 1} frames) per forward;"
                " split longer inputs into chunks"
            )
        x = self.patch_embed(mel)
        if self.has_cls:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            return x + self.pos_embed[:, : n_patches + 1]
        return x + self.pos_embed[:, 1 : n_patches + 1]

    def forward_blocks(self, mel: Tensor, frame_lengths: Tensor | None, blocks: Sequence[int] | int) -> list[Tensor]:
        """Outputs of the requested blocks (0-based, ascending; an int ``n`` = the last n), each after the final norm.

        ``mel`` ``[B, 1, 64, T]`` (normalised ATST log-mel), ``frame_lengths`` ``[B]`` valid frames (None = all).
        Returns ``[B, n_cls + T//4, D]`` per block; index 0 is the CLS token for ATST-Clip. Padded keys are masked
        (queries are not), so valid outputs of a padded batch equal the single-clip outputs.
        """
        keep = block_indices(self.depth, blocks)
        x = self.tokens(mel)
        bias = None
        if frame_lengths is not None:
            bias = key_padding_bias(patch_lengths(frame_lengths.to(x.device)) + self.n_cls, x.shape[1], x.dtype)
        return [self.final_norm(y) for y in super().forward(x, bias, keep)]

    def forward(self, mel: Tensor, frame_lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Last block output after the final norm, ``[B, n_cls + T//4, D]``."""
        return self.forward_blocks(mel, frame_lengths, [self.depth - 1])[0]


class AST(ATSTEncoder):
    """ATST-Clip encoder (reference ``AST``, ``pos_type="cut"``): CLS token, final norm ``norm``."""

    kind = "atst_clip"
    has_cls = True
    norm_name = "norm"

    def __init__(self, embed_dim: int, depth: int, pos_embed_slots: int = POS_EMBED_SLOTS) -> None:
        super().__init__(embed_dim, depth, pos_embed_slots)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))


class FrameAST(ATSTEncoder):
    """ATST-Frame encoder (reference ``FrameAST``, ``nprompt=0``, ``pos_type="cut"``): no CLS, ``norm_frame``."""

    kind = "atst_frame"
    has_cls = False
    norm_name = "norm_frame"


ENCODER_CLASSES: dict[str, type[ATSTEncoder]] = {"atst_clip": AST, "atst_frame": FrameAST}


def encoder_from_config(config: Mapping[str, Any], device: torch.device | str | None = None) -> ATSTEncoder:
    """An encoder with reference random init from :attr:`ATSTEncoder.config` (``device="meta"``: no storage)."""
    cls = ENCODER_CLASSES[config["kind"]]
    with torch.device(device or "cpu"):
        encoder = cls(int(config["embed_dim"]), int(config["depth"]), int(config["pos_embed_slots"]))
        encoder.reset_parameters()
    return encoder.eval()


def random_encoder(kind: str, size: str = "base", seed: int = 0) -> ATSTEncoder:
    """A randomly initialised full-size encoder (testing only): ``kind`` in :data:`KINDS`, ``size`` small/base.

    Deterministic for a given ``seed``; the global random state is left untouched.
    """
    embed_dim, depth = SIZES[size]
    config = {"kind": ARCHITECTURE[kind], "embed_dim": embed_dim, "depth": depth, "pos_embed_slots": POS_EMBED_SLOTS}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return encoder_from_config(config)


def config_from_state(kind: str, state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Encoder configuration derived from tensor shapes (sizes are never taken from a file's labels)."""
    pos_embed = state.get("pos_embed")
    if pos_embed is None or pos_embed.ndim != 3:
        found = "no pos_embed" if pos_embed is None else f"pos_embed of shape {tuple(pos_embed.shape)}"
        raise CheckpointError(f"expected an ATST encoder with pos_embed [1, slots, D], found {found}")
    embed_dim = int(pos_embed.shape[-1])
    if embed_dim % HEAD_DIM:
        raise CheckpointError(f"embed_dim {embed_dim} (from pos_embed) is not a multiple of the head size {HEAD_DIM}")
    block_ids = {int(key.split(".")[1]) for key in state if key.startswith("blocks.") and key.split(".")[1].isdigit()}
    if not block_ids:
        raise CheckpointError("expected an ATST encoder with blocks.<i>.* tensors, found none")
    return {
        **transformer_config(ARCHITECTURE[kind], embed_dim, max(block_ids) + 1),
        "pos_embed_slots": int(pos_embed.shape[1]),
    }


# --- family interface (hear_atst.encoders) ------------------------------------------------------------------------


def extract_encoder_state(checkpoint: Any, kind: str, source: str) -> dict[str, Tensor]:
    """The encoder tensors (canonical keys) of ``kind`` from any released ATST checkpoint layout."""
    return select_encoder_state(checkpoint, kind, source)


def build_encoder(kind: str, state: Mapping[str, Tensor]) -> ATSTEncoder:
    """Build the encoder ``state`` describes and load it strictly (float32, eval mode, parameters frozen).

    The module is created on the meta device and the checkpoint tensors are assigned to it, so loading never
    holds two copies of the weights (memory-mapped checkpoint tensors stay memory-mapped).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: the ATST family has {KINDS}")
    encoder = encoder_from_config(config_from_state(kind, state), device="meta")
    names = {"atst_clip": "ATST-Clip", "atst_frame": "ATST-Frame", "atst_c2f": "ATST-C2F (FrameAST)"}
    check_state_dict(encoder.state_dict(), state, f"{names[kind]} encoder {encoder.config}")
    state = {key: value if value.dtype == torch.float32 else value.float() for key, value in state.items()}
    encoder.load_state_dict(state, strict=True, assign=True)
    encoder.requires_grad_(False)
    return encoder.eval()
