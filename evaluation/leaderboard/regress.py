"""The CI regression gate: re-run a small real benchmark and compare it with the recorded baseline.

The suite and its baseline live in one file (``results/regression.json``, schema ``hear-atst-regression/1``):
``suite`` says which tasks are prepared from ``../shared`` (layout tool, registered task, mode), which models run
(registry name, weights relative to ``../shared``, options), which (model, task) pairs run, the probe settings, how
many seeds each pair's score averages, the tolerance of every score, and which pair is run twice for the
determinism check; ``baseline`` holds, per pair, the primary score and the fingerprints of a run recorded with
``--update``.

The suite runs on the suite runner of ``hear-atst run`` (:mod:`evaluation.suite`): one plan of prepare, embed and
probe jobs over its pairs (``--workers`` local processes), and a second plan for the determinism pair.

The gate fails when

1. a pair's primary score is worse than its baseline by more than its tolerance (lower for higher-is-better
   metrics, higher for error rates), or no better than a constant prediction's (:func:`chance_score`: what
   constant embeddings get), or the score is missing/NaN, or a pair has no baseline;
2. determinism breaks: the determinism pair is run a second time from scratch (fresh embeddings and results
   folders, nothing cached), and its embeddings (sha256 over the bytes of every split's embedding matrix) or its
   result fingerprint (sha256 over every fold's scores, validation score, epoch and the selected
   hyper-parameters, floats at full precision) differ between the two runs.

Every pair's result fingerprint is also compared with the baseline's and reported (``identical`` / ``differs``).
A difference alone does not fail the gate: BLAS and FFT kernels differ between CPU models, change low-order bits,
and a probe trained from them ends where another seed would. So a pair's score is the mean over several seeds and
its tolerance is three standard deviations of the difference of two such means (the seed spread measured on the
suite, in ``suite.tolerance_rule``), never less than two test items' worth or 0.02. The same seed on the same
machine gives bit-identical results.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evaluation.environment import cpu_model
from evaluation.protocol import ProbeConfig, fold_rotation
from evaluation.results import RESULTS_FILENAME
from evaluation.suite.executors import LocalExecutor
from evaluation.suite.plan import ModelRequest, Settings, build_plan
from evaluation.suite.scheduler import run_plan
from evaluation.suite.summary import failures
from evaluation.taskfolder import TaskFolder
from tasks.pipeline import prepare_task
from tasks.registry import get_spec

REGRESSION_SCHEMA = "hear-atst-regression/1"
SHARED_ENV = "HEAR_ATST_SHARED"
EMBEDDING_MATRIX_SUFFIX = ".embeddings.npy"
FLOAT_SLACK = 1e-9  # scores are compared with their tolerance up to float rounding

Log = Callable[[str], None]


class RegressionFileError(ValueError):
    """The regression file is unreadable or inconsistent."""


# --- the suite ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteTask:
    """A task of the suite: a registered task prepared in ``mode`` from ``source`` (relative to ``../shared``),
    or from the output of ``layout`` (a tool in ``../shared/tools`` and its arguments)."""

    name: str
    task: str
    mode: str
    source: str | None = None
    layout: tuple[str, ...] = ()


@dataclass(frozen=True)
class SuiteModel:
    name: str
    model: str
    weights: str | None = None  # relative to ../shared
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Suite:
    shared: str  # ../shared, relative to the regression file
    sample_rate: int
    tasks: dict[str, SuiteTask]
    models: dict[str, SuiteModel]
    pairs: tuple[tuple[str, str], ...]  # (model name, task name)
    probe: dict[str, Any]  # ProbeConfig keyword arguments, all but the seeds
    seeds: dict[str, int]  # how many seeds (0, 1, ...): "default" and per pair key "<model>/<task>"
    tolerance: dict[str, float]  # "default" and per pair key "<model>/<task>"
    determinism_pair: tuple[str, str]

    def tolerance_for(self, key: str) -> float:
        return float(self.tolerance.get(key, self.tolerance["default"]))

    def probe_for(self, key: str) -> ProbeConfig:
        """The probe of pair ``key``: the suite's settings with seeds ``0 .. n - 1`` (the score is their mean)."""
        return ProbeConfig(**self.probe, seeds=list(range(self.seeds.get(key, self.seeds["default"]))))


def pair_key(model: str, task: str) -> str:
    return f"{model}/{task}"


def load_regression(path: str | Path) -> tuple[Suite, dict[str, Any], dict[str, Any]]:
    """The suite, the baseline (``{}`` before the first ``--update``) and the whole document."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RegressionFileError(f"{path}: not a readable regression file: {error}") from None
    if document.get("schema") != REGRESSION_SCHEMA:
        raise RegressionFileError(f"{path}: schema {document.get('schema')!r}, expected {REGRESSION_SCHEMA!r}")
    try:
        raw = document["suite"]
        tasks = {
            name: SuiteTask(name, t["task"], t["mode"], t.get("source"), tuple(t.get("layout", ())))
            for name, t in raw["tasks"].items()
        }
        models = {
            name: SuiteModel(name, m["model"], m.get("weights"), m.get("options") or {})
            for name, m in raw["models"].items()
        }
        pairs = tuple((model, task) for model, task in raw["pairs"])
        suite = Suite(
            shared=raw["shared"],
            sample_rate=int(raw["sample_rate"]),
            tasks=tasks,
            models=models,
            pairs=pairs,
            probe=dict(raw["probe"]),
            seeds={key: int(value) for key, value in raw["seeds"].items()},
            tolerance={key: float(value) for key, value in raw["tolerance"].items()},
            determinism_pair=tuple(raw["determinism"]["pair"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RegressionFileError(f"{path}: malformed suite ({error!r})") from None
    for model, task in (*suite.pairs, suite.determinism_pair):
        if model not in suite.models or task not in suite.tasks:
            raise RegressionFileError(f"{path}: pair {model}/{task} names an unknown model or task")
    if suite.determinism_pair not in suite.pairs:
        raise RegressionFileError(f"{path}: the determinism pair {'/'.join(suite.determinism_pair)} is not one of "
                                  "the suite's pairs (it is the second run of one)")
    for name, table in (("tolerance", suite.tolerance), ("seeds", suite.seeds)):
        if "default" not in table:
            raise RegressionFileError(f"{path}: {name} needs a 'default'")
    if "seeds" in suite.probe or min(suite.seeds.values()) < 1:
        raise RegressionFileError(f"{path}: seeds are counts of at least 1 under 'seeds', not a probe setting")
    for task in suite.tasks.values():
        if (task.source is None) == (not task.layout):
            raise RegressionFileError(f"{path}: task {task.name} needs exactly one of 'source' and 'layout'")
    return suite, dict(document.get("baseline") or {}), document


def resolve_shared(suite: Suite, regression_file: Path, override: str | Path | None = None) -> Path:
    """``override`` (``--shared``), else ``$HEAR_ATST_SHARED``, else the suite's path relative to its file."""
    chosen = override or os.environ.get(SHARED_ENV) or (regression_file.resolve().parent / suite.shared)
    shared = Path(chosen).resolve()
    if not (shared / "data").is_dir() or not (shared / "tools").is_dir():
        raise FileNotFoundError(
            f"{shared}: not the shared reference folder (needs data/ and tools/); "
            f"pass --shared PATH or set ${SHARED_ENV}"
        )
    return shared


# --- running -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairResult:
    """What the gate needs of one (model, task) run."""

    key: str
    metric: str
    higher_is_better: bool
    score: float | None
    result_fingerprint: str
    embeddings_fingerprint: str
    seconds: float
    chance: float | None = None  # the best score a constant prediction gets (see chance_score)


def chance_score(folder: TaskFolder, metric: str) -> float | None:
    """The best primary score a constant prediction gets on the test folds (what constant embeddings give; label-blind
    random ones can beat it by luck). ``top1_acc``: the mean over test folds of the largest class share; onset
    F-measure: 0 (a constant frame prediction gives no event or one that never ends); other metrics (error rates
    among them, for which "no better" would read the other way): None."""
    if metric == "top1_acc":
        shares = []
        for rotation in fold_rotation(folder.metadata):
            labels = Counter(entries[0] for split in rotation["test"] for entries in folder.labels[split].values())
            shares.append(max(labels.values()) / labels.total())
        return sum(shares) / len(shares)
    if metric == "event_onset_200ms_fms":
        return 0.0
    return None


def _at_chance(result: PairResult, score: float) -> bool:
    """``score`` is no better than ``result``'s constant prediction (up to float rounding)."""
    return result.chance is not None and score <= result.chance + FLOAT_SLACK


def result_fingerprint(results: Mapping[str, Any]) -> str:
    """sha256 over every fold's scores, validation score and epoch and the selected hyper-parameters of each seed."""
    essence = [
        {
            "seed": run["seed"],
            "selected_hyperparameters": run["selected_hyperparameters"],
            "folds": {
                name: {key: fold.get(key) for key in ("scores", "validation_score", "epoch")}
                for name, fold in sorted(run["folds"].items())
            },
        }
        for run in results["runs"]
    ]
    return hashlib.sha256(json.dumps(essence, sort_keys=True).encode()).hexdigest()


def embeddings_fingerprint(folder: Path) -> str:
    """sha256 over the name and bytes of every split's embedding matrix (``<split>.embeddings.npy``)."""
    matrices = sorted(folder.glob(f"*{EMBEDDING_MATRIX_SUFFIX}"))
    if not matrices:
        raise FileNotFoundError(f"{folder}: no *{EMBEDDING_MATRIX_SUFFIX} embedding matrices")
    digest = hashlib.sha256()
    for matrix in matrices:
        digest.update(matrix.name.encode() + b"\0")
        with matrix.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def prepare_tasks(suite: Suite, shared: Path, work: Path, log: Log) -> dict[str, TaskFolder]:
    """Lay out (if needed) and prepare every suite task under ``work``; the prepared task folders by suite name."""
    folders = {}
    for task in suite.tasks.values():
        started = time.perf_counter()
        if task.layout:
            source = work / "sources" / task.name
            tool, *arguments = task.layout
            command = [sys.executable, str(shared / "tools" / tool), str(source), *arguments]
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
        else:
            source = shared / str(task.source)
        path = prepare_task(
            get_spec(task.task), work / "tasks", source=source, sample_rates=[suite.sample_rate], mode=task.mode
        )
        folders[task.name] = TaskFolder.load(path)
        log(f"prepared {task.name}: {path.name} ({time.perf_counter() - started:.1f} s)")
    return folders


def pair_result(key: str, results: Mapping[str, Any], embeddings: Path, folder: TaskFolder, seconds: float
                ) -> PairResult:
    """What the gate needs of one finished (model, task) run."""
    score = results["score"]["mean"]
    return PairResult(
        key=key,
        metric=results["primary_score"],
        higher_is_better=bool(results["higher_is_better"]),
        score=None if score is None or not math.isfinite(score) else float(score),
        result_fingerprint=result_fingerprint(results),
        embeddings_fingerprint=embeddings_fingerprint(embeddings),
        seconds=seconds,
        chance=chance_score(folder, results["primary_score"]),
    )


def run_pairs(suite: Suite, shared: Path, pairs: Sequence[tuple[str, str]], folders: Mapping[str, TaskFolder],
              work: Path, workers: int, log: Log) -> dict[str, PairResult]:
    """Run ``pairs`` as one plan on the suite runner (``workers`` local processes), with embeddings, results and
    the run's logs under ``work`` (a fresh folder gives a fresh run)."""
    names = sorted({model for model, _ in pairs})
    tasks = sorted({task for _, task in pairs})
    requests = []
    for name in names:
        spec = suite.models[name]
        requests.append(ModelRequest(spec.model, shared / spec.weights if spec.weights else None,
                                     dict(spec.options or {})))
    wanted = {(names.index(model), tasks.index(task)): [suite.probe_for(pair_key(model, task))]
              for model, task in pairs}
    tasks_dir = folders[tasks[0]].path.parent  # where prepare_tasks wrote every task folder
    settings = Settings(tasks_dir, work / "embeddings", work / "results")
    plan = build_plan(requests, [folders[task].name for task in tasks], [], settings, wanted)
    outcomes = run_plan(plan, LocalExecutor(workers, work / "run" / "logs"), work / "run")
    failed = failures(outcomes)
    if failed:
        raise RuntimeError("\n".join(failed))
    results = {}
    for (model_index, task_index), (probe,) in wanted.items():
        model, task = names[model_index], tasks[task_index]
        setup, folder = plan.models[model_index], plan.tasks[task_index]
        key = pair_key(model, task)
        job = plan.jobs[f"probe/{setup.model_id}/{folder.name}/{probe.run_name}"]
        embed = plan.jobs[job.needs[0]]
        document = json.loads((job.output / RESULTS_FILENAME).read_text(encoding="utf-8"))
        seconds = outcomes[embed.key].seconds + outcomes[job.key].seconds
        results[key] = pair_result(key, document, embed.output, folder, seconds)
        log(f"{key}: {results[key].metric} = {_number(results[key].score)} ({seconds:.1f} s)")
    return results


@dataclass(frozen=True)
class SuiteRun:
    results: dict[str, PairResult]
    repeat: PairResult  # the determinism pair, run a second time from scratch
    seconds: float
    cpu_seconds: float = 0.0  # CPU time of this process and its finished children (the runner's workers, the
    # layout tools), all threads


def run_suite(suite: Suite, shared: Path, work: Path, log: Log, workers: int = 1) -> SuiteRun:
    """Prepare the tasks, run every pair on the suite runner, then the determinism pair again in its own fresh
    folders."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    folders = prepare_tasks(suite, shared, work, log)
    results = run_pairs(suite, shared, suite.pairs, folders, work / "runs", workers, log)
    key = pair_key(*suite.determinism_pair)
    repeat = run_pairs(suite, shared, [suite.determinism_pair], folders, work / "repeat", 1, lambda _: None)[key]
    log(f"{key} again from scratch: {repeat.metric} = {_number(repeat.score)} ({repeat.seconds:.1f} s)")
    return SuiteRun(results, repeat, time.perf_counter() - started, _cpu_seconds() - cpu_started)


def _cpu_seconds() -> float:
    """CPU seconds of this process plus its reaped children: the pairs run in the runner's worker processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# --- the gate ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRow:
    key: str
    metric: str
    baseline: float | None
    current: float | None
    tolerance: float | None
    status: str  # ok, improved, REGRESSED, AT CHANCE, NO SCORE, NO BASELINE, NOT RUN, NONDETERMINISTIC
    detail: str
    chance: float | None = None  # a constant prediction's score, where defined

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "improved")


def gate(suite: Suite, baseline: Mapping[str, Any], run: SuiteRun) -> list[GateRow]:
    """One row per pair (score against baseline) and one for the determinism check."""
    rows = []
    for model, task in suite.pairs:
        key = pair_key(model, task)
        rows.append(_score_row(key, baseline.get(key), run.results.get(key), suite.tolerance_for(key)))
    expected = {pair_key(*pair) for pair in suite.pairs}
    for key in sorted(set(baseline) - expected):
        rows.append(
            GateRow(
                key,
                baseline[key]["metric"],
                baseline[key]["score"],
                None,
                None,
                "NOT RUN",
                "in the baseline but not in the suite: run --update",
            )
        )
    rows.append(_determinism_row(pair_key(*suite.determinism_pair), run))
    return rows


def _score_row(key: str, recorded: Mapping[str, Any] | None, current: PairResult | None, tolerance: float) -> GateRow:
    if current is None:
        return GateRow(
            key,
            recorded["metric"] if recorded else "?",
            recorded["score"] if recorded else None,
            None,
            tolerance,
            "NOT RUN",
            "the suite did not produce this pair",
        )
    if recorded is None:
        return GateRow(
            key,
            current.metric,
            None,
            current.score,
            tolerance,
            "NO BASELINE",
            "no recorded score: run `hear-atst regress --update` deliberately",
        )
    if current.score is None or not math.isfinite(current.score):
        return GateRow(key, current.metric, recorded["score"], current.score, tolerance, "NO SCORE",
                       "the run gave no finite score")
    if not isinstance(recorded.get("score"), int | float) or not math.isfinite(recorded["score"]):
        return GateRow(key, current.metric, None, current.score, tolerance, "NO BASELINE",
                       f"the recorded score {recorded.get('score')!r} is not a number: run --update deliberately")
    if recorded["metric"] != current.metric:
        return GateRow(
            key,
            current.metric,
            recorded["score"],
            current.score,
            tolerance,
            "NO BASELINE",
            f"baseline is for {recorded['metric']}: run --update",
        )
    sign = 1.0 if current.higher_is_better else -1.0
    gain = sign * (current.score - recorded["score"])  # > 0: better
    identical = current.result_fingerprint == recorded["result_fingerprint"]
    detail = "results identical to baseline" if identical else "results differ from baseline"
    if _at_chance(current, current.score):
        return GateRow(key, current.metric, recorded["score"], current.score, tolerance, "AT CHANCE",
                       f"no better than a constant prediction; {detail}", current.chance)
    if gain < -tolerance - FLOAT_SLACK:  # a drop of exactly the tolerance passes (0.50 - 0.48 is 0.0200000...02)
        status = "REGRESSED"
    elif gain > tolerance + FLOAT_SLACK:
        status = "improved"
    else:
        status = "ok"
    return GateRow(key, current.metric, recorded["score"], current.score, tolerance, status, detail, current.chance)


def _determinism_row(key: str, run: SuiteRun) -> GateRow:
    first, second = run.results[key], run.repeat
    problems = []
    if first.embeddings_fingerprint != second.embeddings_fingerprint:
        problems.append("embeddings differ")
    if first.result_fingerprint != second.result_fingerprint:
        problems.append(f"results differ ({first.score} vs {second.score})")
    status = "NONDETERMINISTIC" if problems else "ok"
    detail = "; ".join(problems) if problems else "identical embeddings and results in two fresh runs"
    return GateRow(f"{key} (run twice)", "determinism", first.score, second.score, 0.0, status, detail)


def render_gate(rows: list[GateRow], width: int = 200) -> str:
    """The gate as a plain-text table (what CI prints), followed by a one-line verdict."""
    table = Table(title="Regression gate", show_lines=False)
    for column in ("pair", "metric", "baseline", "current", "change", "tolerance", "chance", "status", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        change = f"{row.current - row.baseline:+.4f}" if row.current is not None and row.baseline is not None else "–"
        table.add_row(
            row.key,
            row.metric,
            _number(row.baseline),
            _number(row.current),
            change,
            _number(row.tolerance),
            _number(row.chance),
            row.status,
            row.detail,
        )
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    failed = [row.key for row in rows if row.failed]
    verdict = f"FAILED: {', '.join(failed)}" if failed else f"passed: {len(rows)} checks"
    return buffer.getvalue() + verdict + "\n"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


# --- updating the baseline ---------------------------------------------------------------------------------------


def updated_document(document: Mapping[str, Any], suite: Suite, run: SuiteRun) -> dict[str, Any]:
    """The regression document with its baseline replaced by ``run`` (refused when determinism broke)."""
    determinism = _determinism_row(pair_key(*suite.determinism_pair), run)
    if determinism.failed:
        raise RuntimeError(f"not recording a baseline from a nondeterministic run: {determinism.detail}")
    missing = [key for key, result in run.results.items() if result.score is None]
    if missing:
        raise RuntimeError(f"not recording a baseline with missing scores: {', '.join(missing)}")
    blind = [f"{key} ({result.score:.4f} - tolerance {suite.tolerance_for(key):.4f} <= chance {result.chance:.4f})"
             for key, result in run.results.items() if _at_chance(result, result.score - suite.tolerance_for(key))]
    if blind:
        raise RuntimeError("not recording a baseline whose tolerance reaches a constant prediction's score (the gate "
                           f"could not tell a model with constant embeddings): {', '.join(blind)}")
    baseline = {
        key: {name: value for name, value in asdict(result).items() if name != "key"}
        for key, result in run.results.items()
    }
    return {
        **document,
        "baseline": baseline,
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
