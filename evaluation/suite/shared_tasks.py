"""A suite's tasks built from the shared reference folder (``../shared``: real data in ``data/``, layout tools in
``tools/``), as ``hear-atst prepare`` builds them: the ``prepare`` entry of each suite task (:mod:`.suites`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from evaluation.suite.suites import Suite, TaskSource
from evaluation.taskfolder import TaskFolder
from tasks.pipeline import prepare_task, prepared_folder
from tasks.registry import get_spec

SHARED_ENV = "HEAR_ATST_SHARED"
CHECKOUT = Path(__file__).resolve().parents[2]  # this code's repository (or install) folder

Log = Callable[[str], None]


def _checkout_of(anchor: Path) -> Path:
    """The nearest folder at or above ``anchor`` holding a ``pyproject.toml``, else ``anchor``'s own folder."""
    anchor = anchor.resolve()
    folder = anchor if anchor.is_dir() else anchor.parent
    return next((parent for parent in (folder, *folder.parents) if (parent / "pyproject.toml").is_file()), folder)


def resolve_shared(suite: Suite, anchor: str | Path = CHECKOUT, override: str | Path | None = None) -> Path:
    """``override`` (``--shared``), else ``$HEAR_ATST_SHARED``, else ``shared`` beside the checkout holding
    ``anchor`` (a file or folder of it, e.g. its ``results/regression.json``; default: this code's checkout)."""
    chosen = override or os.environ.get(SHARED_ENV) or (_checkout_of(Path(anchor)).parent / "shared")
    shared = Path(chosen).resolve()
    if not (shared / "data").is_dir() or not (shared / "tools").is_dir():
        raise FileNotFoundError(
            f"{shared}: not the shared reference folder (needs data/ and tools/) that suite {suite.name} prepares "
            f"its tasks from; pass --shared PATH or set ${SHARED_ENV}"
        )
    return shared


def prepare_tasks(suite: Suite, shared: Path, work: Path, log: Log, tasks_dir: Path | None = None
                  ) -> dict[str, TaskFolder]:
    """Lay out (if needed) and prepare every suite task with a ``prepare`` entry into ``tasks_dir`` (default
    ``work/tasks``; layouts go to ``work/sources``); a folder already complete there is kept as it is. The prepared
    task folders by suite task key."""
    tasks_dir = tasks_dir or work / "tasks"
    folders = {}
    for task in suite.tasks.values():
        if task.prepare is None:
            continue
        started = time.perf_counter()
        spec, mode = get_spec(task.prepare.task), task.prepare.mode
        path = prepared_folder(spec, tasks_dir, mode, [suite.sample_rate])
        if path is None:
            path = prepare_task(spec, tasks_dir, source=_source(task.key, task.prepare, shared, work),
                                sample_rates=[suite.sample_rate], mode=mode)
            log(f"prepared {task.key}: {path.name} ({time.perf_counter() - started:.1f} s)")
        else:
            log(f"prepared {task.key}: {path.name} (complete already)")
        if path.name != task.folder:
            raise ValueError(f"{suite.path}: task {task.key} names folder {task.folder}, but preparing it gives "
                             f"{path.name}")
        folders[task.key] = TaskFolder.load(path)
    return folders


def _source(key: str, prepare: TaskSource, shared: Path, work: Path) -> Path:
    """The folder ``prepare_task`` reads: ``shared/<source>``, or the output of the layout tool run into
    ``work/sources/<key>``."""
    if not prepare.layout:
        return shared / str(prepare.source)
    source = work / "sources" / key
    tool, *arguments = prepare.layout
    command = [sys.executable, str(shared / "tools" / tool), str(source), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    return source
