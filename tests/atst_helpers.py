"""Test helpers for the ATST HEAR modules: fixture loading and a synthesized ATST-C2F checkpoint.

No ATST-C2F checkpoint has been released, so :func:`write_c2f_checkpoint` builds one in the official
``DistillLightningModule`` layout (docs/atst.md §3): the FrameAST student under ``model.student.*`` (the fixture
ATST-Frame teacher encoder), the fine-tuned ATST-Clip teacher under ``model.teacher.encoder.*`` (the fixture
ATST-Clip encoder) with its head, and the student's linear head.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hear_atst.checkpoints import load_torch_file

N_CLASSES = 527


def fixture(fixtures_dir: Path, name: str):
    """A reference fixture file (``expected_atst_frame``, ``audio``, ...), loaded safely."""
    return load_torch_file(fixtures_dir / f"{name}.pt")


def write_c2f_checkpoint(fixtures_dir: Path, path: Path) -> Path:
    """An ATST-C2F distillation archive whose student is the fixture ATST-Frame teacher encoder."""
    frame = load_torch_file(fixtures_dir / "atst_frame_lightning.ckpt")["state_dict"]
    clip = load_torch_file(fixtures_dir / "atst_clip_lightning.ckpt")["state_dict"]
    teacher_prefix = "model.teacher.encoder."
    state = {"model.student." + k[len(teacher_prefix):]: v.clone() for k, v in frame.items()
             if k.startswith(teacher_prefix)}
    state |= {k: v.clone() for k, v in clip.items() if k.startswith(teacher_prefix)}
    dim = state["model.student.pos_embed"].shape[-1]
    generator = torch.Generator().manual_seed(0)
    for head, width in (("model.teacher.head", 2 * dim), ("model.linear", dim)):
        state[f"{head}.norm.running_mean"] = torch.zeros(width)
        state[f"{head}.norm.running_var"] = torch.ones(width)
        state[f"{head}.norm.num_batches_tracked"] = torch.tensor(0)
        state[f"{head}.linear.weight"] = torch.randn(N_CLASSES, width, generator=generator) * 0.01
        state[f"{head}.linear.bias"] = torch.zeros(N_CLASSES)
    torch.save({"epoch": 0, "global_step": 0, "state_dict": state}, path)
    return path


def teacher_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The teacher encoder's tensors of an official Lightning archive, prefix stripped, as float64."""
    prefix = "model.teacher.encoder."
    state = load_torch_file(checkpoint)["state_dict"]
    return {k[len(prefix):]: v.to(torch.float64) for k, v in state.items() if k.startswith(prefix)}


def reference_blocks(weights: dict[str, torch.Tensor], mel: torch.Tensor) -> list[torch.Tensor]:
    """An independent oracle for the ATST encoders: docs/atst.md §2 restated in float64 on one unpadded clip.

    ``mel`` [64, T] -> every block's output after the final norm, [tokens, D] (ATST-Clip: row 0 is the CLS
    token). Patches are 64 mel x 4 frames, vector index ``mel * 4 + frame`` (trailing T % 4 frames dropped);
    ATST-Clip prepends its CLS token and adds ``pos_embed[:P + 1]``, ATST-Frame adds ``pos_embed[1:P + 1]``;
    pre-norm blocks with softmax attention (64-dim heads, no qkv bias) and an exact-GELU MLP, LayerNorm eps 1e-6.
    """
    n_patches = mel.shape[-1] // 4
    patches = mel[:, : 4 * n_patches].to(torch.float64).reshape(64, n_patches, 4).permute(1, 0, 2)
    x = patches.reshape(n_patches, 256) @ weights["patch_embed.patch_embed.weight"].T
    x = x + weights["patch_embed.patch_embed.bias"]
    has_cls = "cls_token" in weights
    if has_cls:
        x = torch.cat([weights["cls_token"][0], x]) + weights["pos_embed"][0, : n_patches + 1]
    else:
        x = x + weights["pos_embed"][0, 1 : n_patches + 1]
    final = "norm" if has_cls else "norm_frame"
    dim = x.shape[-1]
    heads = dim // 64

    def norm(name: str, values: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(values, (dim,), weights[f"{name}.weight"], weights[f"{name}.bias"], 1e-6)

    outputs = []
    depth = len({key.split(".")[1] for key in weights if key.startswith("blocks.")})
    for b in range(depth):
        block = f"blocks.{b}"
        qkv = norm(f"{block}.norm1", x) @ weights[f"{block}.attn.qkv.weight"].T
        q, k, v = qkv.reshape(-1, 3, heads, 64).unbind(1)
        attention = torch.softmax(torch.einsum("qhd,khd->hqk", q, k) / 8.0, dim=-1)  # 64 ** -0.5 = 1 / 8
        mixed = torch.einsum("hqk,khd->qhd", attention, v).reshape(-1, dim)
        x = x + mixed @ weights[f"{block}.attn.proj.weight"].T + weights[f"{block}.attn.proj.bias"]
        hidden = torch.nn.functional.gelu(norm(f"{block}.norm2", x) @ weights[f"{block}.mlp.fc1.weight"].T
                                          + weights[f"{block}.mlp.fc1.bias"])
        x = x + hidden @ weights[f"{block}.mlp.fc2.weight"].T + weights[f"{block}.mlp.fc2.bias"]
        outputs.append(norm(final, x))
    return outputs
