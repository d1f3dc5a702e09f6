"""The plan of a suite of pairs (:mod:`.suites`): each (model, task) pair it names, with the suite's models and
weights and the pair's own probe and seeds, as one plan of the suite runner. ``hear-atst run --suite ci`` runs it;
``hear-atst regress`` runs it and gates its scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluation.suite.plan import ModelRequest, Plan, Settings, build_plan, probe_key
from evaluation.suite.suites import Suite, pair_key


@dataclass(frozen=True)
class PairPlan:
    plan: Plan
    probe_jobs: dict[str, str]  # pair key "<model>/<task>" -> the key of its probe job in the plan


def plan_pairs(suite: Suite, shared: Path | None, settings: Settings, pairs: Sequence[tuple[str, str]] | None = None
               ) -> PairPlan:
    """The plan of ``pairs`` (default: all the suite's) over the task folders under ``settings.tasks_dir``; weights
    are relative to ``shared``. Raises :class:`~evaluation.suite.plan.PlanError` listing every problem."""
    pairs = list(suite.pairs if pairs is None else pairs)
    names = sorted({model for model, _ in pairs})
    tasks = sorted({task for _, task in pairs})
    requests = []
    for name in names:
        spec = suite.models[name]
        if spec.weights and shared is None:
            raise ValueError(f"{suite.path}: model {name}'s weights {spec.weights} are relative to the shared folder, "
                             "which was not given")
        weights = shared / spec.weights if spec.weights and shared else None
        requests.append(ModelRequest(spec.model, weights, dict(spec.options)))
    wanted = {(names.index(model), tasks.index(task)): [suite.probe_for(pair_key(model, task), settings.device)]
              for model, task in pairs}
    plan = build_plan(requests, [suite.tasks[task].folder for task in tasks], [], settings, wanted)
    probe_jobs = {}
    for model, task in pairs:
        (probe,) = wanted[names.index(model), tasks.index(task)]
        setup, folder = plan.models[names.index(model)], plan.tasks[tasks.index(task)]
        probe_jobs[pair_key(model, task)] = probe_key(setup, folder, probe)
    return PairPlan(plan, probe_jobs)
