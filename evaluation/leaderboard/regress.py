"""The CI regression gate's run: the suite of pairs named by the baseline file, run on the suite runner of
``hear-atst run`` (:mod:`evaluation.suite`), then its determinism pair again from scratch.

The parts of the gate, one module each: the suite's definition (:mod:`evaluation.suite.suites`, ``ci.toml``) and
its tasks built from ``../shared`` (:mod:`evaluation.suite.shared_tasks`); the recorded baseline and tolerances
(:mod:`.baseline`, ``results/regression.json``); this run; the comparison and its verdict (:mod:`.gate`); the
table CI prints (:mod:`.gate_table`).
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluation.leaderboard.fingerprints import embeddings_fingerprint, result_fingerprint
from evaluation.leaderboard.gate import PairResult, SuiteRun, chance_score
from evaluation.leaderboard.gate_table import number
from evaluation.results import RESULTS_FILENAME, read_results
from evaluation.suite.executors import LocalExecutor
from evaluation.suite.pairs import plan_pairs
from evaluation.suite.plan import Settings
from evaluation.suite.scheduler import run_plan
from evaluation.suite.shared_tasks import prepare_tasks
from evaluation.suite.suites import Suite, pair_key
from evaluation.suite.summary import failures
from evaluation.taskfolder import TaskFolder

Log = Callable[[str], None]


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


def run_pairs(suite: Suite, shared: Path, pairs: Sequence[tuple[str, str]], tasks_dir: Path, work: Path,
              workers: int, log: Log) -> dict[str, PairResult]:
    """Run ``pairs`` as one plan on the suite runner (``workers`` local processes) over the task folders under
    ``tasks_dir``, with embeddings, results and the run's logs under ``work`` (a fresh folder gives a fresh run)."""
    pair_plan = plan_pairs(suite, shared, Settings(tasks_dir, work / "embeddings", work / "results"), pairs)
    plan = pair_plan.plan
    executor = LocalExecutor(workers, work / "run" / "logs")
    try:
        outcomes = run_plan(plan, executor, work / "run")
    finally:
        executor.close()  # its workers reaped, so their CPU time counts in the suite's
    failed = failures(outcomes)
    if failed:
        raise RuntimeError("\n".join(failed))
    folders = {folder.name: folder for folder in plan.tasks}
    results = {}
    for model, task in pairs:
        key = pair_key(model, task)
        job = plan.jobs[pair_plan.probe_jobs[key]]
        embed = plan.jobs[job.needs[0]]
        document = read_results(job.output / RESULTS_FILENAME)
        seconds = outcomes[embed.key].seconds + outcomes[job.key].seconds
        results[key] = pair_result(key, document, embed.output, folders[suite.tasks[task].folder], seconds)
        log(f"{key}: {results[key].metric} = {number(results[key].score)} ({seconds:.1f} s)")
    return results


def run_suite(suite: Suite, shared: Path, work: Path, log: Log, workers: int = 1) -> SuiteRun:
    """Prepare the tasks, run every pair on the suite runner, then the determinism pair again in its own fresh
    folders."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    tasks_dir = work / "tasks"
    prepare_tasks(suite, shared, work, log, tasks_dir)
    results = run_pairs(suite, shared, suite.pairs, tasks_dir, work / "runs", workers, log)
    key = pair_key(*suite.determinism_pair)
    repeat = run_pairs(suite, shared, [suite.determinism_pair], tasks_dir, work / "repeat", 1, lambda _: None)[key]
    log(f"{key} again from scratch: {repeat.metric} = {number(repeat.score)} ({repeat.seconds:.1f} s)")
    return SuiteRun(results, repeat, time.perf_counter() - started, _cpu_seconds() - cpu_started)


def _cpu_seconds() -> float:
    """CPU seconds of this process plus its reaped children: the pairs run in the runner's worker processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
