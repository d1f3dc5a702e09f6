"""The regression gate's recorded baseline: ``results/regression.json`` (schema ``hear-atst-regression/2``).

What runs is the suite of pairs the file names under ``suite`` (``ci``, shipped as
``evaluation/suite/suites/ci.toml``, or a ``.toml`` path relative to the file): its tasks, models, pairs, probe
settings, seeds and determinism pair (:mod:`evaluation.suite.suites`). ``hear-atst run --suite ci`` reads the same
definition. The file holds what was measured on that suite:

- ``tolerance``: ``default`` and per pair ``"<model>/<task>"``. A pair's score is the mean over several seeds, and
  its tolerance is three standard deviations of the difference of two such means (the seed spread measured on the
  suite, recorded in ``tolerance_rule``), never less than two test items' worth or 0.02: BLAS and FFT kernels
  differ between CPU models, change low-order bits, and a probe trained from them ends where another seed would.
  The same seed on the same machine gives bit-identical results. Tolerances are measured properties of the
  baseline, kept with it; ``--update`` leaves them as they are.
- ``baseline``: per pair the primary score, its metric and direction, the fingerprints, seconds and a constant
  prediction's score, and ``baseline_recorded`` (date, machine, library versions, suite timings), both written by
  ``hear-atst regress --update``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from evaluation.environment import cpu_model
from evaluation.leaderboard.gate import SuiteRun, at_chance, determinism_row
from evaluation.suite.suites import Suite, SuiteError, load_suite, pair_key

REGRESSION_SCHEMA = "hear-atst-regression/2"


class RegressionFileError(ValueError):
    """The regression file is unreadable or inconsistent."""


@dataclass(frozen=True)
class Baseline:
    path: Path
    tolerance: dict[str, float]  # "default" and per pair key
    recorded: dict[str, Any]  # pair key -> what --update recorded of it ({} before the first --update)
    document: dict[str, Any]  # the whole file

    def tolerance_for(self, key: str) -> float:
        return float(self.tolerance.get(key, self.tolerance["default"]))


def load_regression(path: str | Path) -> tuple[Suite, Baseline, dict[str, Any]]:
    """The suite the file names, its baseline and the whole document."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RegressionFileError(f"{path}: not a readable regression file: {error}") from None
    if document.get("schema") != REGRESSION_SCHEMA:
        raise RegressionFileError(f"{path}: schema {document.get('schema')!r}, expected {REGRESSION_SCHEMA!r}")
    name = str(document.get("suite", ""))
    try:
        suite = load_suite(path.parent / name if name.endswith(".toml") else name)
        tolerance = {key: float(value) for key, value in document["tolerance"].items()}
    except SuiteError as error:
        raise RegressionFileError(f"{path}: {error}") from None
    except (KeyError, AttributeError, TypeError, ValueError) as error:
        raise RegressionFileError(f"{path}: malformed tolerance ({error!r})") from None
    if suite.determinism_pair is None:
        raise RegressionFileError(f"{path}: suite {suite.name} names no determinism_pair (the gate runs it twice)")
    unprepared = [task.key for task in suite.tasks.values() if task.prepare is None]
    if unprepared:
        raise RegressionFileError(f"{path}: suite {suite.name}: the gate builds every task fresh from ../shared, "
                                  f"but {', '.join(unprepared)} has no 'prepare'")
    if "default" not in tolerance:
        raise RegressionFileError(f"{path}: tolerance needs a 'default'")
    strangers = sorted(set(tolerance) - {"default"} - {pair_key(*pair) for pair in suite.pairs})
    if strangers:
        raise RegressionFileError(f"{path}: tolerance for {', '.join(strangers)}: not a pair of suite {suite.name}")
    return suite, Baseline(path, tolerance, dict(document.get("baseline") or {}), document), document


def updated_document(suite: Suite, baseline: Baseline, run: SuiteRun) -> dict[str, Any]:
    """The regression document with its baseline replaced by ``run`` (refused when determinism broke, a score is
    missing, or a tolerance reaches a constant prediction's score)."""
    determinism = determinism_row(suite, run)
    if determinism.failed:
        raise RuntimeError(f"not recording a baseline from a nondeterministic run: {determinism.detail}")
    missing = [key for key, result in run.results.items() if result.score is None]
    if missing:
        raise RuntimeError(f"not recording a baseline with missing scores: {', '.join(missing)}")
    blind = [f"{key} ({result.score:.4f} - tolerance {baseline.tolerance_for(key):.4f} <= chance {result.chance:.4f})"
             for key, result in run.results.items() if at_chance(result, result.score - baseline.tolerance_for(key))]
    if blind:
        raise RuntimeError("not recording a baseline whose tolerance reaches a constant prediction's score (the gate "
                           f"could not tell a model with constant embeddings): {', '.join(blind)}")
    recorded = {
        key: {name: value for name, value in asdict(result).items() if name != "key"}
        for key, result in run.results.items()
    }
    return {
        **baseline.document,
        "baseline": recorded,
        "baseline_recorded": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "suite_seconds": round(run.seconds, 1),
            "suite_cpu_seconds": round(run.cpu_seconds, 1),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch": version("torch"),
            "numpy": version("numpy"),
        },
    }
