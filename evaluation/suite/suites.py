"""Suites as data: TOML files naming task folders (and, for ``hear2021``, each task's kit settings).

``--suite NAME`` reads ``evaluation/suite/suites/NAME.toml`` (shipped as package data); ``--suite PATH.toml``
reads that file. A task entry has ``folder`` (the task folder's name) and optionally ``leaderboard`` (its column on
the HEAR leaderboard), ``labels`` (vocabulary size) and ``metadata`` (the task_metadata.json the kit reads, with
``null_keys`` naming the dotted keys that are null, since TOML has none).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SUITES_FOLDER = "suites"  # beside this module, shipped as package data


class SuiteError(ValueError):
    """A suite file is missing or malformed."""


@dataclass(frozen=True)
class SuiteTask:
    key: str
    folder: str
    leaderboard: str | None = None
    labels: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: dict[str, SuiteTask]
    path: str

    def folders(self) -> list[str]:
        return [task.folder for task in self.tasks.values()]


def _folder() -> Any:
    return resources.files("evaluation.suite") / SUITES_FOLDER


def suite_names() -> list[str]:
    """The suites shipped with the package."""
    return sorted(entry.name.removesuffix(".toml") for entry in _folder().iterdir()
                  if entry.name.endswith(".toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name, or a suite file by path."""
    text_path = str(name_or_path)
    if text_path.endswith(".toml"):
        path = Path(text_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SuiteError(f"{path}: cannot read the suite file ({error.strerror or error})") from None
    else:
        entry = _folder() / f"{text_path}.toml"
        if not entry.is_file():
            raise SuiteError(f"unknown suite {text_path!r}; suites: {', '.join(suite_names())} (or a .toml file)")
        text, path = entry.read_text(encoding="utf-8"), Path(str(entry))
    try:
        document = tomllib.loads(text)
        tasks = {key: _task(key, entry) for key, entry in document["tasks"].items()}
        return Suite(str(document["name"]), str(document.get("description", "")), tasks, str(path))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
        raise SuiteError(f"{path}: not a suite file ({type(error).__name__}: {error})") from None


def _task(key: str, entry: dict[str, Any]) -> SuiteTask:
    metadata = copy.deepcopy(entry.get("metadata", {}))
    for dotted in entry.get("null_keys", ()):
        *parents, last = dotted.split(".")
        target = metadata
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = None
    labels = entry.get("labels")
    return SuiteTask(key, str(entry["folder"]), entry.get("leaderboard"), int(labels) if labels else None, metadata)
