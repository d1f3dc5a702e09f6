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
