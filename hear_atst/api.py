"""``hear_atst.evaluate``: the ``hear-atst eval`` chain from Python, for a model in memory or any ``--model`` form."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import nn

from evaluation.results import DEFAULT_EMBEDDINGS_DIR, DEFAULT_RESULTS_DIR

if TYPE_CHECKING:
    from evaluation.protocol import ProbeConfig
    from evaluation.runner import EvalOutcome


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def evaluate(model: str | ModuleType | nn.Module, task: str | os.PathLike[str], *, api: ModuleType | None = None,
             weights: str | os.PathLike[str] | None = None, options: dict[str, Any] | None = None,
             tasks_dir: str | os.PathLike[str] | None = None,
             embeddings_dir: str | os.PathLike[str] = DEFAULT_EMBEDDINGS_DIR,
             results_dir: str | os.PathLike[str] = DEFAULT_RESULTS_DIR, probe: ProbeConfig | None = None,
             precision: str = "fp32", device: str = "cpu", progress: bool = False, quiet: bool = False,
             **probe_settings: Any) -> EvalOutcome:
    """Embed (cached), probe and score one task, writing the files ``hear-atst eval`` writes; its outcome.

    ``model``: a loaded HEAR model object (its embedding functions are those of the module defining its class,
    or of ``api``), a ``torch.nn.Module`` frame encoder (``docs/own-model.md``), a HEAR module object, or any
    ``--model`` form as text (with ``weights`` and ``options`` for ``load_model``). ``task``: a task folder path, or
    a task name looked up in ``tasks_dir`` (default ``$HEAR_ATST_TASKS`` or ``./tasks_data``). The probe is
    ``probe`` or ``ProbeConfig(**probe_settings)`` (e.g. ``protocol="linear", max_epochs=20``). Notes go to stderr
    unless ``quiet``; ``progress`` adds the embedding progress bar and the probe stage's display. A model in memory
    is moved to ``device`` and put in eval mode.
    """
    from evaluation.progress import ProgressDisplay
    from evaluation.protocol import ProbeConfig
    from evaluation.runner import load_task_folder, resolve_model, run_eval
    from evaluation.taskfolder import TaskFolder
    from tasks.registry import default_tasks_dir

    if probe is not None and probe_settings:
        raise ValueError(f"give probe= or probe settings ({', '.join(sorted(probe_settings))}), not both")
    probe = probe or ProbeConfig(**probe_settings)
    setup = resolve_model(model, weights, options, precision, device, api=api)
    if isinstance(task, os.PathLike) or Path(task).is_dir():
        folder = TaskFolder.load(task)
    else:
        folder = load_task_folder(task, tasks_dir or default_tasks_dir())
    with ProgressDisplay() if progress else nullcontext() as display:  # the probe stage's display, as eval's
        return run_eval(setup, folder, embeddings_dir=embeddings_dir, results_dir=results_dir, probe=probe,
                        progress=progress, log=None if quiet else _stderr, probe_progress=display)
