"""The authors' extraction recipes (audiossl ``ec3a14d``, spec: docs/atst.md §4), on :meth:`forward_blocks`.

Each function reproduces one reference method exactly, quirks included, so that outputs can be compared with
the reference numbers (tests/test_atst_encoders.py) and so that the HEAR modules can offer the official recipes:

- :func:`frame_intermediate_layers` = ``FrameAST.get_intermediate_layers(x, length, n, scene)``
- :func:`clip_intermediate_layers` = ``AST.get_intermediate_layers(x, length, n)``; :func:`clip_forward_cls` =
  ``AST.forward(x, length)``
- :func:`clip_intermediate_layers_chunks` = ``AST.get_intermediate_layers_chunks`` (6 s chunks, with the
  chunk-averaging quirk)
- :func:`frame_embedding_py` = ``methods/atstframe/embedding.py`` ``get_scene_embedding`` and
  ``get_timestamp_embedding`` (10 s chunks)

"Last ``n`` blocks" follows the reference loops: ``n`` larger than the depth selects every block (``embedding.py``
hard-codes ``n=12``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hear_atst.encoders.atst import PATCH_FRAMES, ATSTEncoder, patch_lengths
from hear_atst.frontends.atst_mel import TOKEN_HOP_MS

MEAN_EPS = 1e-6  # the reference divides masked token sums by (patch count + 1e-6)
CLIP_CHUNK_FRAMES = 601  # ATST-Clip linear eval / fine-tune: int(6.0 * 16000 / 160 + 1)
EMBEDDING_PY_CHUNK_FRAMES = 1001  # embedding.py, hard-coded
EMBEDDING_PY_BLOCKS = 12  # embedding.py: n=12 (scene, hard-coded) and N_BLOCKS=12 (timestamps)


def last_blocks(depth: int, n: int) -> list[int]:
    """0-based indices of the last ``n`` blocks (all of them when ``n >= depth``)."""
    if n < 1:
        raise ValueError(f"n={n}: select at least one block")
    return list(range(max(depth - n, 0), depth))


def masked_token_mean(tokens: Tensor, counts: Tensor) -> Tensor:
    """Reference mean pooling: ``sum(tokens[:, :count]) / (count + 1e-6)``; ``tokens`` ``[B, N, D]``, ``counts`` [B].

    A count larger than ``N`` keeps every token but still divides by the count (see the ATST-Clip chunk quirk).
    """
    valid = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < counts[:, None]
    summed = (tokens * valid.unsqueeze(-1).to(tokens.dtype)).sum(dim=1)
    return summed / (counts.to(tokens.dtype)[:, None] + MEAN_EPS)


def frame_intermediate_layers(
    encoder: ATSTEncoder, mel: Tensor, frame_lengths: Tensor, n: int, scene: bool
) -> Tensor:
    """ATST-Frame: the last ``n`` normed block outputs, mean-pooled over valid tokens (``scene``) -> ``[B, n*D]``,
    or per token -> ``[B, T//4, n*D]``; blocks concatenated in ascending order."""
    outputs = encoder.forward_blocks(mel, frame_lengths, last_blocks(encoder.depth, n))
    if not scene:
        return torch.cat(outputs, dim=-1)
    counts = patch_lengths(frame_lengths).to(mel.device)
    return torch.cat([masked_token_mean(y, counts) for y in outputs], dim=-1)


def clip_intermediate_layers(encoder: ATSTEncoder, mel: Tensor, frame_lengths: Tensor, n: int) -> list[Tensor]:
    """ATST-Clip: the last ``n`` normed block outputs ``[B, 1 + T//4, D]`` (index 0 = CLS)."""
    return encoder.forward_blocks(mel, frame_lengths, last_blocks(encoder.depth, n))


def clip_forward_cls(encoder: ATSTEncoder, mel: Tensor, frame_lengths: Tensor | None) -> Tensor:
    """ATST-Clip ``forward``: the CLS token of the last block after ``norm``, ``[B, D]``."""
    return encoder(mel, frame_lengths)[:, 0]


def clip_intermediate_layers_chunks(
    encoder: ATSTEncoder,
    mel: Tensor,
    frame_lengths: Tensor,
    n: int,
    chunk_len: int = CLIP_CHUNK_FRAMES,
    avgpool: bool = True,
) -> Tensor:
    """ATST-Clip clip embedding over ``chunk_len``-frame chunks: ``cat([cls_b...] + [mean_b...])``, ``[B, 2*n*D]``
    (``avgpool=False``: CLS parts only, ``[B, n*D]``).

    Reference quirk, reproduced on purpose: chunk ``i`` gets ``cur_len = max(length - i*chunk_len, 0)``, *not*
    clipped to the chunk, so a non-final chunk's patch mean covers all its tokens but is divided by the patch count
    of the whole remaining input. Chunk 0 counts when ``cur_len > 0``, a later chunk when
    ``cur_len > chunk_len // 2``; counted chunks are averaged with equal weight. A tail chunk of fewer than 4
    frames (no patch) is skipped: its ``cur_len`` is at most 3, so the reference gives it weight 0 as well.
    """
    blocks = last_blocks(encoder.depth, n)
    frame_lengths = frame_lengths.to(device=mel.device, dtype=torch.long)
    parts, weights = [], []
    for i in range(mel.shape[-1] // chunk_len + 1):
        chunk = mel[..., i * chunk_len : (i + 1) * chunk_len]
        cur_len = (frame_lengths - i * chunk_len).clamp(min=0)
        if i > 0 and chunk.shape[-1] < PATCH_FRAMES:
            continue
        outputs = encoder.forward_blocks(chunk, cur_len, blocks)
        cls = [y[:, 0] for y in outputs]
        means = [masked_token_mean(y[:, 1:], patch_lengths(cur_len)) for y in outputs] if avgpool else []
        parts.append(torch.cat(cls + means, dim=-1))
        weights.append(cur_len > 0 if i == 0 else cur_len > chunk_len // 2)
    mark = torch.stack(weights).to(mel.dtype).unsqueeze(-1)  # [chunks, B, 1]
    return (torch.stack(parts) * mark).sum(dim=0) / mark.sum(dim=0)


def frame_embedding_py(encoder: ATSTEncoder, mel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``embedding.py`` on a whole-clip mel ``[B, 1, 64, T]``: ``(scene [B, n*D], tokens [B, P, n*D],
    timestamps [B, P] ms)`` with ``n = min(12, depth)``.

    1001-frame chunks, each run unmasked (length = chunk width); each drops its last frame (250 tokens), so chunk
    ``k``'s tokens are ``10*k`` ms later than the returned timestamps (token starts ``40*j`` ms from 0). The scene
    embedding is the *unweighted* mean of the chunks' token means; a 1-3 frame tail chunk has no token and
    contributes a zero vector to that mean (as in the reference).
    """
    blocks = last_blocks(encoder.depth, EMBEDDING_PY_BLOCKS)
    batch, width = mel.shape[0], len(blocks) * encoder.embed_dim
    scenes, tokens = [], []
    for i in range(mel.shape[-1] // EMBEDDING_PY_CHUNK_FRAMES + 1):
        chunk = mel[..., i * EMBEDDING_PY_CHUNK_FRAMES : (i + 1) * EMBEDDING_PY_CHUNK_FRAMES]
        if chunk.shape[-1] == 0:
            continue
        if chunk.shape[-1] < PATCH_FRAMES:
            scenes.append(mel.new_zeros(batch, width))
            continue
        lengths = torch.full((batch,), chunk.shape[-1], dtype=torch.long, device=mel.device)
        outputs = encoder.forward_blocks(chunk, lengths, blocks)
        counts = patch_lengths(lengths)
        scenes.append(torch.cat([masked_token_mean(y, counts) for y in outputs], dim=-1))
        tokens.append(torch.cat(outputs, dim=-1))
    embeddings = torch.cat(tokens, dim=1)
    timestamps = torch.arange(embeddings.shape[1], device=mel.device, dtype=mel.dtype) * TOKEN_HOP_MS
    return torch.stack(scenes).mean(dim=0), embeddings, timestamps.expand(batch, -1)
