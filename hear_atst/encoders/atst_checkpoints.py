"""Where the ATST encoders sit inside the released checkpoint files (spec: docs/atst.md §3).

Only the wanted encoder is selected (the teacher of an SSL archive; the FrameAST student of an ATST-C2F
distillation archive); student copies, projector/predictor heads, classifier heads and optimizer state are left
behind. Sizes are never read from a file's labels (``hyper_parameters['arch']``, ``args.arch``): they come from
the tensor shapes (:func:`hear_atst.encoders.atst.config_from_state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from hear_atst.checkpoints import CheckpointError, summarize_keys

NAMES = {"atst_clip": "ATST-Clip", "atst_frame": "ATST-Frame", "atst_c2f": "ATST-C2F"}


@dataclass(frozen=True)
class Layout:
    """An encoder at ``checkpoint[container][prefix + key]`` (``container`` None: the checkpoint itself).

    The layout applies when ``marker`` is a key of the container (default: ``prefix + "pos_embed"``).
    """

    description: str
    container: str | None
    prefix: str
    marker: str = ""

    @property
    def marker_key(self) -> str:
        return self.marker or self.prefix + "pos_embed"

    def describe(self) -> str:
        where = f"['{self.container}']" if self.container else "the top level"
        marker = f" (recognised by its {self.marker})" if self.marker else ""
        return f"{self.description}: {self.prefix or '<bare keys>'}* in {where}{marker}"


# SSL Lightning archives (ATSTLightningModule / FrameATSTLightningModule) hold a BYOL student and teacher; the
# student's key marks them (an archive holding the teacher alone is not a released format and is refused).
_SSL_MARKER = "model.student.encoder.pos_embed"
_BARE = Layout("bare encoder state dict", None, "")

LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "atst_clip": (
        Layout("ATST-Clip Lightning archive, teacher", "state_dict", "model.teacher.encoder.", _SSL_MARKER),
        Layout("ATST-Clip DINO-style archive, teacher", "teacher", "module.backbone."),
        Layout("fine-tuned ATST-Clip (FineTuningPLModule)", "state_dict", "encoder.encoder."),
        _BARE,
    ),
    "atst_frame": (
        Layout("ATST-Frame Lightning archive, teacher", "state_dict", "model.teacher.encoder.", _SSL_MARKER),
        Layout("fine-tuned ATST-Frame", "state_dict", "encoder.encoder."),
        _BARE,
    ),
    "atst_c2f": (
        Layout("ATST-C2F distillation archive (DistillLightningModule), student", "state_dict", "model.student."),
        Layout("frame-level ATST-C2F fine-tune (DistillATSTPredModule)", "state_dict",
               "encoder.encoder.frame_encoder."),
        _BARE,
    ),
}


def select_encoder_state(checkpoint: Any, kind: str, source: str) -> dict[str, Tensor]:
    """The ``kind`` encoder's tensors with canonical keys; :class:`CheckpointError` when there is none."""
    if kind not in LAYOUTS:
        raise ValueError(f"kind={kind!r}: ATST kinds are {tuple(LAYOUTS)}")
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    for layout in LAYOUTS[kind]:
        container = checkpoint.get(layout.container) if layout.container else checkpoint
        if isinstance(container, Mapping) and layout.marker_key in container:
            state = {
                key[len(layout.prefix):]: value
                for key, value in container.items()
                if key.startswith(layout.prefix) and isinstance(value, Tensor)
            }
            _check_family_keys(state, kind, f"{source} ({layout.description})")
            return state
    raise CheckpointError(
        f"{source}: no {NAMES[kind]} encoder found. Looked for "
        + "; ".join(layout.describe() for layout in LAYOUTS[kind])
        + f". Found: {_describe(checkpoint)}"
    )


def _check_family_keys(state: Mapping[str, Tensor], kind: str, where: str) -> None:
    """ATST-Clip has ``cls_token`` and ``norm.*``; FrameAST (ATST-Frame, ATST-C2F) has ``norm_frame.*`` only."""
    has_clip_keys = "cls_token" in state or "norm.weight" in state
    has_frame_keys = "norm_frame.weight" in state
    if kind == "atst_clip" and (has_frame_keys or not has_clip_keys):
        found = "ATST-Frame keys (norm_frame.*)" if has_frame_keys else "neither cls_token nor norm.*"
        raise CheckpointError(f"{where}: expected an ATST-Clip encoder (cls_token, norm.*) but found {found}")
    if kind != "atst_clip" and (has_clip_keys or not has_frame_keys):
        found = "ATST-Clip keys (cls_token, norm.*)" if has_clip_keys else "no norm_frame.*"
        raise CheckpointError(
            f"{where}: expected an {NAMES[kind]} encoder (FrameAST: norm_frame.*, no cls_token) but found {found}"
        )


def _describe(checkpoint: Mapping[str, Any]) -> str:
    """Top-level keys, and the key groups of any nested tensor dicts (``state_dict``, ``teacher``...)."""
    parts = [f"top-level keys {sorted(map(str, checkpoint))[:12]}"]
    for name, value in checkpoint.items():
        if isinstance(value, Mapping) and any(isinstance(v, Tensor) for v in value.values()):
            parts.append(f"['{name}']: {summarize_keys(value)}")
    return "; ".join(parts)
