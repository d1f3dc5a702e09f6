"""The registry of preparable tasks, and lookup of prepared HEAR task folders on disk.

A task folder is a directory holding a ``task_metadata.json``, either directly under ``tasks_dir`` (where
``hear-atst prepare`` writes) or where the official HEAR archives unpack, ``tasks_dir/hear-<version>/tasks/<folder>/``
(hear_eval.md §2). :func:`resolve_task_folder` accepts a registered name or alias, a folder name, or the
``task_name`` written in a folder's metadata.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.hear_format import METADATA_FILENAME

if TYPE_CHECKING:  # the registry itself stays light: ``hear-atst --help`` reads it
    import pandas as pd

    from tasks.download import Source

TASKS_DIR_ENV = "HEAR_ATST_TASKS"
DEFAULT_TASKS_DIR = "tasks_data"  # when $HEAR_ATST_TASKS is not set
WORKDIR_NAME = "_workdir"
FOLDER_PATTERNS = ("*", "*/tasks/*")  # prepared here / unpacked from an official hear-<version>-*.tar.gz

MetadataBuilder = Callable[[Mapping[str, Path], Mapping[str, Any], Path], "pd.DataFrame"]


def default_filestem(relpath: str) -> str:
    """hear-preprocess's default stem: the file name without its last suffix."""
    return Path(relpath).stem


@dataclass(frozen=True)
class TaskSpec:
    """How to build one HEAR task folder from its official downloads.

    ``config`` is the hear-preprocess ``generic_task_config`` (insertion-ordered, with ``modes``);
    ``sources`` lists the downloads each mode needs; ``build_metadata(roots, run_config, workdir)`` returns one row
    per (file, label) or (file, event) with columns ``relpath`` (absolute), ``split``, ``label`` (+ ``start``/``end``
    in ms for event tasks; optionally ``unique_filestem``). ``split_key`` maps the table to the grouping key that
    keeps related files in one split (default: the file stem).
    """

    name: str
    summary: str
    needs: str
    config: Mapping[str, Any]
    sources: Mapping[str, tuple[Source, ...]]
    build_metadata: MetadataBuilder
    aliases: tuple[str, ...] = ()
    filestem: Callable[[str], str] = default_filestem
    split_key: Callable[[pd.DataFrame], pd.Series] | None = None
    synthetic: bool = False  # built from nothing (no download, no --source): prepared on first use

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.config["modes"])

    def folder_name(self, mode: str | None = None) -> str:
        """``{task_name}-{version}-{mode}`` after the mode's overrides."""
        return folder_name(run_config(self.config, mode))


def run_config(generic: Mapping[str, Any], mode: str | None = None) -> dict[str, Any]:
    """The run config of hear-preprocess: the generic config updated with the mode, in its exact key order."""
    config = copy.deepcopy(dict(generic))
    mode = mode or config["default_mode"]
    if mode not in config["modes"]:
        raise ValueError(f"{config['task_name']} has no mode {mode!r}; modes: {', '.join(config['modes'])}")
    config.update(copy.deepcopy(config["modes"][mode]))
    config["tmp_dir"] = WORKDIR_NAME
    config["mode"] = mode
    del config["modes"]
    if config["split_mode"] == "trainvaltest":
        config["splits"] = ["train", "valid", "test"]
    else:
        config["splits"] = [f"fold{i:02d}" for i in range(config["nfolds"])]
    return config


def folder_name(config: Mapping[str, Any]) -> str:
    return f"{config['task_name']}-{config['version']}-{config['mode']}"



@dataclass(frozen=True)
class TaskEntry:
    """A registered task: the module that defines it (imported only when the task is used) and its aliases.

    The module holds ``CONFIG`` (a hear-preprocess task config with ``modes``), ``SUMMARY``, ``NEEDS``, ``SOURCES``
    and ``build_metadata``; optionally ``filestem``, ``split_key`` and ``SYNTHETIC = True`` (see :class:`TaskSpec`).
    """

    module: str
    aliases: tuple[str, ...] = ()


TASKS: dict[str, TaskEntry] = {
    "esc50": TaskEntry("tasks.esc50"),
    "speech_commands": TaskEntry("tasks.speech_commands"),
    "voxceleb1": TaskEntry("tasks.voxceleb1"),
    "dcase2016_task2": TaskEntry("tasks.dcase2016", aliases=("dcase2016",)),
    "spoken_digit": TaskEntry("tasks.spoken_digit", aliases=("fsdd",)),
    "demo": TaskEntry("tasks.demo"),
    "demo_events": TaskEntry("tasks.demo_events"),
}


@functools.cache
def _load_spec(name: str) -> TaskSpec:
    entry = TASKS[name]
    module = importlib.import_module(entry.module)
    if module.CONFIG["task_name"] != name:
        raise ValueError(f"{entry.module} defines task {module.CONFIG['task_name']!r}, registered as {name!r}")
    return TaskSpec(
        name=name,
        summary=module.SUMMARY,
        needs=module.NEEDS,
        config=module.CONFIG,
        sources=module.SOURCES,
        build_metadata=module.build_metadata,
        aliases=entry.aliases,
        filestem=getattr(module, "filestem", default_filestem),
        split_key=getattr(module, "split_key", None),
        synthetic=getattr(module, "SYNTHETIC", False),
    )


def registered_name(name: str) -> str:
    """The registered name of ``name`` (itself or an alias); ``KeyError`` listing the registered tasks otherwise."""
    for registered, entry in TASKS.items():
        if name == registered or name in entry.aliases:
            return registered
    known = ", ".join(registered + (f" ({', '.join(entry.aliases)})" if entry.aliases else "")
                      for registered, entry in TASKS.items())
    raise KeyError(f"unknown task {name!r}; registered tasks: {known}")


def get_spec(name: str) -> TaskSpec:
    """The registered task called ``name`` (or with that alias), its module imported."""
    return _load_spec(registered_name(name))


def all_specs() -> list[TaskSpec]:
    """Every registered task, in registry order (imports every task module)."""
    return [_load_spec(name) for name in TASKS]


def default_tasks_dir() -> Path:
    """Where task folders are prepared and looked up: ``$HEAR_ATST_TASKS``, else ``./tasks_data``."""
    return Path(os.environ.get(TASKS_DIR_ENV) or DEFAULT_TASKS_DIR)


def list_task_folders(tasks_dir: str | Path) -> list[Path]:
    """Every task folder directly under ``tasks_dir`` or in ``tasks_dir/<archive top>/tasks/``, sorted by name
    (then path: a folder name can be found twice, see :func:`duplicate_folders`)."""
    tasks_dir = Path(tasks_dir)
    if not tasks_dir.is_dir():
        return []
    return sorted((folder for pattern in FOLDER_PATTERNS for folder in tasks_dir.glob(pattern)
                   if (folder / METADATA_FILENAME).is_file()), key=lambda folder: (folder.name, str(folder)))


def duplicate_folders(folders: list[Path]) -> dict[str, list[Path]]:
    """Folder names found more than once (e.g. a prepared folder and an unpacked official one) -> their paths."""
    by_name: dict[str, list[Path]] = {}
    for folder in folders:
        by_name.setdefault(folder.name, []).append(folder)
    return {name: paths for name, paths in by_name.items() if len(paths) > 1}


def _found_twice(name: str, paths: list[Path], tasks_dir: Path) -> LookupError:
    return LookupError(f"task folder {name} found more than once in {tasks_dir}: {' and '.join(map(str, paths))}; "
                       "keep one")


def resolve_task_folder(name_or_alias: str, tasks_dir: str | Path, mode: str | None = None) -> Path:
    """The prepared folder of a task: by folder name, registered name/alias, or metadata ``task_name``.

    Raises ``LookupError`` listing the candidates when several folders match, or saying how to prepare the task
    when none does.
    """
    from evaluation.taskfolder import read_task_metadata

    tasks_dir = Path(tasks_dir)
    folders = list_task_folders(tasks_dir)
    by_name = [f for f in folders if f.name == name_or_alias]
    if len(by_name) > 1:
        raise _found_twice(name_or_alias, by_name, tasks_dir)
    if by_name:
        return by_name[0]
    names = {name_or_alias}
    spec = None
    try:
        spec = get_spec(name_or_alias)
        names.add(spec.name)
    except KeyError:
        pass
    candidates = []
    for folder in folders:
        meta = read_task_metadata(folder)
        if meta.get("task_name") in names and (mode is None or meta.get("mode") == mode):
            candidates.append(folder)
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        twice = duplicate_folders(candidates)
        if len(twice) == 1 and len(candidates) == len(next(iter(twice.values()))):
            raise _found_twice(*next(iter(twice.items())), tasks_dir)
        listed = ", ".join(map(str, candidates))
        raise LookupError(f"{name_or_alias!r} matches several task folders in {tasks_dir}: {listed}; name one of them")
    if spec is not None:
        wanted = spec.folder_name(mode)
        source = "" if spec.synthetic else " --source PATH"
        raise LookupError(
            f"task {spec.name} is not prepared in {tasks_dir} (no {wanted}/); run "
            f"`hear-atst prepare {spec.name}{source} --tasks-dir {tasks_dir}"
            + (f" --mode {mode}`" if mode else "`")
            + f" (needs {spec.needs})"
        )
    on_disk = ", ".join(f.name for f in folders) or "none"
    raise LookupError(
        f"no task {name_or_alias!r}: not registered ({', '.join(TASKS)}) and no such folder in {tasks_dir} "
        f"(folders there: {on_disk})"
    )
