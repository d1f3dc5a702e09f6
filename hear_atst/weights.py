"""Finding a model's weights file: an explicit path, or a weights directory named by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hear_atst.registry import ModelSpec

WEIGHTS_DIR_ENV = "HEAR_ATST_WEIGHTS"


class WeightsNotFoundError(FileNotFoundError):
    """No weights file was given and none was found; the message says where to get one."""


def resolve_weights(spec: ModelSpec, model_file_path: str | os.PathLike[str] | None) -> Path:
    """The checkpoint to load for ``spec``: ``model_file_path`` if given, else the first of the spec's
    default file names found in ``$HEAR_ATST_WEIGHTS``. Raises :class:`WeightsNotFoundError` otherwise."""
    if model_file_path:
        path = Path(model_file_path).expanduser()
        if not path.is_file():
            problem = (f"is a directory, not a file (give the checkpoint in it, or set {WEIGHTS_DIR_ENV}={path} to "
                       "have it looked up there)" if path.is_dir() else "does not exist")
            raise WeightsNotFoundError(f"{spec.name}: weights file {path} {problem}")
        return path
    directory = os.environ.get(WEIGHTS_DIR_ENV)
    if directory:
        for filename in spec.weights_filenames:
            candidate = Path(directory).expanduser() / filename
            if candidate.is_file():
                return candidate
    missing = "" if not directory or Path(directory).expanduser().is_dir() else ", which is not a directory"
    looked = (f" (looked in ${WEIGHTS_DIR_ENV}={directory}{missing} for {', '.join(spec.weights_filenames)})"
              if directory else "")
    raise WeightsNotFoundError(
        f"{spec.name}: no weights file given{looked}.\n"
        f"  Get the official checkpoint: {spec.weights_source}\n"
        f"  Then pass it: load_model('/path/to/{spec.weights_filenames[0]}') or --weights FILE,\n"
        f"  or put it in a directory and set {WEIGHTS_DIR_ENV}=/that/directory.\n"
        f"  For random weights (testing only) pass random_weights=True (--model-option random_weights=true; the "
        f"ATST models also take size=base or size=small)."
    )


def weights_for_options(spec: ModelSpec, weights: str | os.PathLike[str] | None, options: dict[str, Any]
                        ) -> Path | None:
    """The weights file a command loads ``spec`` with (None: the model has none, or ``random_weights=True``); a
    weights file for a model without weights, or next to ``random_weights=True``, is refused."""
    random_weights = options.get("random_weights") is True
    if weights and not spec.needs_weights:
        raise ValueError(f"model {spec.name} takes no weights file; got --weights {weights}")
    if weights and random_weights:
        raise ValueError(f"--weights {weights} and random_weights=true exclude each other: drop one")
    return resolve_weights(spec, weights) if spec.needs_weights and not random_weights else None
