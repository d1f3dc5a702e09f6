"""HEAR module ``hear_atst.atst_c2f``: ATST-C2F behind the HEAR API.

ATST-C2F is not an architecture of its own: it is an ATST-Frame encoder (``FrameAST``, the student of the
authors' coarse-to-fine distillation, ``module_distill*.py``), so it runs exactly like :mod:`hear_atst.atst_frame`
(1000-frame windows of whole tokens, token centres ``40 i + 15`` ms). Defaults follow the C2F recipe:
``get_intermediate_layers(x, lengths, n=1, scene=True)``, i.e. the last block after ``norm_frame``:
- timestamp embeddings: the last block's token vectors (768 for base);
- scene embeddings: their mean over the clip's tokens.

Up to 10 s this is the C2F recipe exactly: for clips of at most 1003 frames (10.02 s) both outputs equal
``get_intermediate_layers`` on the whole clip, which is also what the other-task recipe (``module_distill_other.py``)
computes there (one chunk). Beyond, deliberately: the AS-2M recipe (``module_distill.py``) sees one 10 s crop, and the
other-task recipe crops the clip centrally to 12 s and chunks it as ATST-Frame's linear evaluation (1001-frame
chunks, ``cur_len`` clipped to the chunk, a chunk encoded only when ``end > start + 20`` frames, a later chunk counted
only when ``cur_len > 500`` frames), so only the first 10 s of its crop count; here 1000-frame windows cover the
whole clip and the scene embedding is the mean over all of its tokens.

No checkpoint has been released; :func:`load_model` reads the student of a distillation archive
(``model.student.*``), a frame-level C2F fine-tune, or a converted file. Options as :mod:`hear_atst.atst_frame`
(``blocks`` default 1).
"""

from __future__ import annotations

from hear_atst.atst_frame import frame_model_loader
from hear_atst.hear_api import get_scene_embeddings, get_timestamp_embeddings

__all__ = ["get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

DEFAULT_BLOCKS = 1  # C2F recipe: n=1

load_model = frame_model_loader("atst_c2f", DEFAULT_BLOCKS, """ATST-C2F (the FrameAST student); without
``model_file_path`` the file is looked up in ``$HEAR_ATST_WEIGHTS`` (the error says how to obtain one).""")
