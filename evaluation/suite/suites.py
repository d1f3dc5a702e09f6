"""Suites as data: TOML files naming task folders and, for a suite of pairs, the models and probes that run on them.

``--suite NAME`` reads ``evaluation/suite/suites/NAME.toml`` (shipped as package data); ``--suite PATH.toml``
reads that file. A task entry has ``folder`` (the task folder's name) and optionally ``leaderboard`` (its column on
the HEAR leaderboard), ``labels`` (vocabulary size), ``metadata`` (the task_metadata.json the kit reads, with
``null_keys`` naming the dotted keys that are null, since TOML has none) and ``prepare`` (how the folder is built
from the shared reference folder ``../shared``: a registered ``task`` prepared in ``mode`` from ``source``, a
folder relative to ``../shared``, or from the output of ``layout``, a tool in ``../shared/tools`` and its
arguments).

A *suite of pairs* (``ci``, the regression suite) also names its ``[models]`` (registry name, ``weights`` relative
to ``../shared``, ``options``), the (model, task) ``pairs`` that run (default: every model on every task), the
``[probe]`` settings (:class:`~evaluation.protocol.ProbeConfig` keywords, all but the seeds), how many seeds
``0 .. n - 1`` each pair's score averages (``[seeds]``: ``default`` and per pair ``"<model>/<task>"``), the
``sample_rate`` its tasks are prepared at, and optionally the ``determinism_pair`` that ``hear-atst regress`` runs
twice.
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
class TaskSource:
    """How a task folder is built from ``../shared``: the registered ``task`` prepared in ``mode`` from ``source``
    (relative to ``../shared``), or from the output of ``layout`` (a tool in ``../shared/tools`` and its arguments)."""

    task: str
    mode: str
    source: str | None = None
    layout: tuple[str, ...] = ()


@dataclass(frozen=True)
class SuiteTask:
    key: str
    folder: str
    leaderboard: str | None = None
    labels: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    prepare: TaskSource | None = None


@dataclass(frozen=True)
class SuiteModel:
    name: str
    model: str  # any form ``eval --model`` accepts
    weights: str | None = None  # relative to ../shared
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: dict[str, SuiteTask]
    path: str
    models: dict[str, SuiteModel] = field(default_factory=dict)  # empty: the models come from the command line
    pairs: tuple[tuple[str, str], ...] = ()  # (model name, task key), in the suite's order
    probe: dict[str, Any] = field(default_factory=dict)  # ProbeConfig keyword arguments, all but the seeds
    seeds: dict[str, int] = field(default_factory=lambda: {"default": 1})  # "default" and per pair key
    sample_rate: int = 16000  # the rate ``prepare`` builds the tasks at
    determinism_pair: tuple[str, str] | None = None

    def folders(self) -> list[str]:
        return [task.folder for task in self.tasks.values()]

    def probe_for(self, key: str, device: str = "cpu") -> Any:
        """The :class:`~evaluation.protocol.ProbeConfig` of pair ``key``: the suite's settings with seeds
        ``0 .. n - 1`` (the score is their mean)."""
        from evaluation.protocol import ProbeConfig

        return ProbeConfig(**self.probe, seeds=list(range(self.seeds.get(key, self.seeds["default"]))),
                           device=device)


def pair_key(model: str, task: str) -> str:
    return f"{model}/{task}"


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
        models = {name: SuiteModel(name, str(entry["model"]), entry.get("weights"), dict(entry.get("options", {})))
                  for name, entry in document.get("models", {}).items()}
        pairs = tuple((str(model), str(task)) for model, task in document.get("pairs", ())) or tuple(
            (model, task) for model in models for task in tasks)
        determinism = document.get("determinism_pair")
        suite = Suite(str(document["name"]), str(document.get("description", "")), tasks, str(path), models,
                      pairs, dict(document.get("probe", {})),
                      {key: int(value) for key, value in document.get("seeds", {"default": 1}).items()},
                      int(document.get("sample_rate", 16000)), tuple(determinism) if determinism else None)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
        raise SuiteError(f"{path}: not a suite file ({type(error).__name__}: {error})") from None
    problem = _inconsistency(suite)
    if problem:
        raise SuiteError(f"{path}: {problem}")
    return suite


def _task(key: str, entry: dict[str, Any]) -> SuiteTask:
    metadata = copy.deepcopy(entry.get("metadata", {}))
    for dotted in entry.get("null_keys", ()):
        *parents, last = dotted.split(".")
        target = metadata
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = None
    labels = entry.get("labels")
    prepare = entry.get("prepare")
    source = None
    if prepare is not None:
        source = TaskSource(str(prepare["task"]), str(prepare["mode"]), prepare.get("source"),
                            tuple(str(part) for part in prepare.get("layout", ())))
    return SuiteTask(key, str(entry["folder"]), entry.get("leaderboard"), int(labels) if labels else None, metadata,
                     source)


def _inconsistency(suite: Suite) -> str | None:
    """What makes a parsed suite unusable, or None."""
    for task in suite.tasks.values():
        if task.prepare is not None and (task.prepare.source is None) == (not task.prepare.layout):
            return f"task {task.key}: 'prepare' needs exactly one of 'source' and 'layout'"
    if not suite.models:
        if suite.pairs or suite.probe or suite.determinism_pair:
            return "'pairs', 'probe' and 'determinism_pair' need [models]"
        return None
    for model, task in (*suite.pairs, *([suite.determinism_pair] if suite.determinism_pair else [])):
        if model not in suite.models or task not in suite.tasks:
            return f"pair {pair_key(model, task)} names an unknown model or task"
    if suite.determinism_pair is not None and suite.determinism_pair not in suite.pairs:
        return (f"the determinism pair {pair_key(*suite.determinism_pair)} is not one of the suite's pairs (it is "
                "the second run of one)")
    if "default" not in suite.seeds or "seeds" in suite.probe or min(suite.seeds.values()) < 1:
        return "seeds are counts of at least 1 under [seeds] with a 'default', not a probe setting"
    try:
        suite.probe_for("default")
    except (TypeError, ValueError) as error:
        return f"[probe]: {error}"
    return None
