"""The regression gate's verdict: a run of the suite compared with the recorded baseline, one row per check.

The gate fails when

1. a pair's primary score is worse than its baseline by more than its tolerance (lower for higher-is-better
   metrics, higher for error rates), or no better than a constant prediction's (:func:`chance_score`: what
   constant embeddings get), or the score is missing/NaN, or a pair has no baseline;
2. determinism breaks: the determinism pair is run a second time from scratch (fresh embeddings and results
   folders, nothing cached), and its embeddings or its result fingerprint (:mod:`.fingerprints`) differ between
   the two runs.

Every pair's result fingerprint is also compared with the baseline's and reported (``identical`` / ``differs``);
a difference alone does not fail the gate (another CPU changes low-order bits: see :mod:`.baseline`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evaluation.protocol import fold_rotation
from evaluation.suite.suites import Suite, pair_key
from evaluation.taskfolder import TaskFolder

if TYPE_CHECKING:
    from evaluation.leaderboard.baseline import Baseline

FLOAT_SLACK = 1e-9  # scores are compared with their tolerance up to float rounding


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


@dataclass(frozen=True)
class SuiteRun:
    results: dict[str, PairResult]
    repeat: PairResult  # the determinism pair, run a second time from scratch
    seconds: float
    cpu_seconds: float = 0.0  # CPU time of this process and its finished children (the runner's workers, the
    # layout tools), all threads


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


def at_chance(result: PairResult, score: float) -> bool:
    """``score`` is no better than ``result``'s constant prediction (up to float rounding)."""
    return result.chance is not None and score <= result.chance + FLOAT_SLACK


def gate(suite: Suite, baseline: Baseline, run: SuiteRun) -> list[GateRow]:
    """One row per pair (score against baseline) and one for the determinism check."""
    rows = []
    for model, task in suite.pairs:
        key = pair_key(model, task)
        rows.append(_score_row(key, baseline.recorded.get(key), run.results.get(key), baseline.tolerance_for(key)))
    expected = {pair_key(*pair) for pair in suite.pairs}
    for key in sorted(set(baseline.recorded) - expected):
        entry = baseline.recorded[key]
        rows.append(GateRow(key, entry["metric"], entry["score"], None, None, "NOT RUN",
                            "in the baseline but not in the suite: run --update"))
    rows.append(determinism_row(suite, run))
    return rows


def _score_row(key: str, recorded: Mapping[str, Any] | None, current: PairResult | None, tolerance: float) -> GateRow:
    if current is None:
        return GateRow(key, recorded["metric"] if recorded else "?", recorded["score"] if recorded else None, None,
                       tolerance, "NOT RUN", "the suite did not produce this pair")
    if recorded is None:
        return GateRow(key, current.metric, None, current.score, tolerance, "NO BASELINE",
                       "no recorded score: run `hear-atst regress --update` deliberately")
    if current.score is None or not math.isfinite(current.score):
        return GateRow(key, current.metric, recorded["score"], current.score, tolerance, "NO SCORE",
                       "the run gave no finite score")
    if not isinstance(recorded.get("score"), int | float) or not math.isfinite(recorded["score"]):
        return GateRow(key, current.metric, None, current.score, tolerance, "NO BASELINE",
                       f"the recorded score {recorded.get('score')!r} is not a number: run --update deliberately")
    if recorded["metric"] != current.metric:
        return GateRow(key, current.metric, recorded["score"], current.score, tolerance, "NO BASELINE",
                       f"baseline is for {recorded['metric']}: run --update")
    sign = 1.0 if current.higher_is_better else -1.0
    gain = sign * (current.score - recorded["score"])  # > 0: better
    identical = current.result_fingerprint == recorded["result_fingerprint"]
    detail = "results identical to baseline" if identical else "results differ from baseline"
    if at_chance(current, current.score):
        return GateRow(key, current.metric, recorded["score"], current.score, tolerance, "AT CHANCE",
                       f"no better than a constant prediction; {detail}", current.chance)
    if gain < -tolerance - FLOAT_SLACK:  # a drop of exactly the tolerance passes (0.50 - 0.48 is 0.0200000...02)
        status = "REGRESSED"
    elif gain > tolerance + FLOAT_SLACK:
        status = "improved"
    else:
        status = "ok"
    return GateRow(key, current.metric, recorded["score"], current.score, tolerance, status, detail, current.chance)


def determinism_row(suite: Suite, run: SuiteRun) -> GateRow:
    """The determinism pair's two runs from scratch: identical embeddings and results, or NONDETERMINISTIC."""
    key = pair_key(*suite.determinism_pair)
    first, second = run.results[key], run.repeat
    problems = []
    if first.embeddings_fingerprint != second.embeddings_fingerprint:
        problems.append("embeddings differ")
    if first.result_fingerprint != second.result_fingerprint:
        problems.append(f"results differ ({first.score} vs {second.score})")
    status = "NONDETERMINISTIC" if problems else "ok"
    detail = "; ".join(problems) if problems else "identical embeddings and results in two fresh runs"
    return GateRow(f"{key} (run twice)", "determinism", first.score, second.score, 0.0, status, detail)
