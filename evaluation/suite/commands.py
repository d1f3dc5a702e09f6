"""``hear-atst run``: many models × tasks × seeds as one planned, resumable job, on local worker processes or Ray.

Exit codes: 0 when every job succeeded (or was already complete), 1 when any failed (listed at the end), 2 for
problems found before any work started (all of them, one line each). Heavy modules are imported inside the
command so that ``hear-atst --help`` stays fast.
"""

from __future__ import annotations

import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from evaluation.commands import Device, Grid
from evaluation.results import DEFAULT_EMBEDDINGS_DIR, DEFAULT_RESULTS_DIR
from hear_atst.commands import CHECK_FAILED, USAGE_ERROR
from hear_atst.registry import Precision
from tasks.commands import TASKS_DIR_HELP

RUNS_FOLDER = "suite-runs"  # under --results-dir: one folder per run with run.json, logs/ and the leaderboard


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(USAGE_ERROR)


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _weights(entries: list[str] | None, models: list[str]) -> dict[str, Path]:
    weights = {}
    for entry in entries or []:
        model, sep, path = entry.partition("=")
        if not sep or model not in models:
            raise _fail(f"--weights {entry}: expected MODEL=FILE with MODEL one of --models ({', '.join(models)})")
        weights[model] = Path(path)
    return weights


def run_command(
    models: Annotated[str, typer.Option("--models", help="Comma-separated models, in any form `eval` accepts.")],
    tasks: Annotated[str | None, typer.Option("--tasks", help="Comma-separated tasks (as `eval --task`).")] = None,
    suite: Annotated[str | None, typer.Option(
        "--suite", help="A suite shipped with hear-atst (hear2021, atst-papers) or a suite .toml file.")] = None,
    executor: Annotated[ExecutorName, typer.Option("--executor", help="local worker processes, or Ray tasks.")
                        ] = ExecutorName.local,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Jobs run at once (local: worker processes, "
                                         "each with CPUs/N torch threads).")] = 1,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="An existing Ray cluster (e.g. ray://head:10001 or auto); default: a new local one.")
    ] = None,
    weights: Annotated[list[str] | None, typer.Option(
        "--weights", help="MODEL=FILE: the checkpoint of one of --models (repeatable).")] = None,
    tasks_dir: Annotated[Path | None, typer.Option("--tasks-dir", help=TASKS_DIR_HELP)] = None,
    embeddings_dir: Annotated[Path, typer.Option("--embeddings-dir", help="Embedding cache (the kit's layout).")
                              ] = Path(DEFAULT_EMBEDDINGS_DIR),
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Where results.json files go.")
                           ] = Path(DEFAULT_RESULTS_DIR),
    protocol: Annotated[str, typer.Option("--protocol", help="Comma-separated probes: hear, linear, knn.")] = "hear",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds 0..N-1 of every probe.")] = 1,
    grid: Annotated[Grid, typer.Option("--grid", help="The kit's grid (hear protocol).")] = Grid.default,
    grid_points: Annotated[int | None, typer.Option("--grid-points", min=1, help="Grid points (hear protocol).")
                           ] = None,
    max_epochs: Annotated[int | None, typer.Option("--max-epochs", min=1, help="Cap every probe's epochs (smoke "
                                                   "runs; labelled in the results folder).")] = None,
    no_psds: Annotated[bool, typer.Option("--no-psds", help="Leave PSDS out of event tasks.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Where models and probes run (ray: embedding jobs ask "
                                           "for one GPU each with cuda).")] = Device.cpu,
    precision: Annotated[Precision, typer.Option("--precision", help="Model precision.")] = Precision.fp32,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", help=f"run.json, job logs and the leaderboard (default: <results-dir>/{RUNS_FOLDER}/<time>).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (with sizes) and stop.")] = False,
) -> None:
    """Plan and run models × tasks × seeds: prepare each task once, embed once per (model, task), probe per
    (model, task, protocol); skip what is complete; end with run.json, the leaderboard and a table of scores."""
    from evaluation.protocol import ProbeConfig
    from evaluation.suite.plan import ModelRequest, PlanError, Settings, build_plan
    from evaluation.suite.suites import SuiteError, load_suite
    from tasks.registry import default_tasks_dir

    model_names = _split(models)
    if not model_names:
        raise _fail("--models names no model")
    if (tasks is None) == (suite is None):
        raise _fail("give exactly one of --tasks and --suite")
    if suite is not None:
        try:
            task_names = load_suite(suite).folders()
        except SuiteError as error:
            raise _fail(str(error)) from None
    else:
        task_names = _split(tasks)
    model_weights = _weights(weights, model_names)
    probes = []
    for name in _split(protocol):
        given = {"grid_points": grid_points} if grid_points is not None and name == "hear" else {}
        try:
            probes.append(ProbeConfig(protocol=name, seeds=list(range(seeds)), grid=grid.value if name == "hear"
                                      else "default", max_epochs=max_epochs, psds=not no_psds, device=device.value,
                                      **given))
        except ValueError as error:
            raise _fail(f"--protocol {name}: {error}") from None
    if not probes:
        raise _fail("--protocol names no probe")
    settings = Settings(tasks_dir or default_tasks_dir(), embeddings_dir, results_dir, device.value, precision.value)
    requests = [ModelRequest(name, model_weights.get(name)) for name in model_names]
    try:
        plan = build_plan(requests, task_names, probes, settings)
    except PlanError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(USAGE_ERROR) from None
    if dry_run:
        typer.echo(describe_plan(plan))
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = run_dir or results_dir / RUNS_FOLDER / stamp
    outcomes = execute(plan, executor, workers, folder, ray_address)
    report(plan, outcomes, folder)


def describe_plan(plan: object) -> str:
    """One line per job: what it does, whether it is complete already, how much audio it covers."""
    from evaluation.suite.plan import Plan

    assert isinstance(plan, Plan)
    lines = [f"{len(plan.jobs)} jobs: {len(plan.models)} model(s) × {len(plan.tasks)} task(s) × "
             f"{len(plan.probes)} probe(s)"]
    for job in plan.jobs.values():
        state = "complete (skipped)" if job.is_complete() else "to run"
        seeds = f", {len(job.probe.seeds)} seed(s)" if job.probe else ""
        lines.append(f"  {job.key}: {state}; {job.audio_seconds / 60:.1f} min of audio{seeds} -> {job.output}")
    return "\n".join(lines)


def execute(plan: object, executor: ExecutorName, workers: int, run_dir: Path, ray_address: str | None) -> dict:
    """Run the plan on the chosen executor, printing the suite's progress on stderr."""
    from evaluation.suite.executors import LocalExecutor, RayExecutor
    from evaluation.suite.plan import Plan, worker_threads
    from evaluation.suite.progress import SuiteProgress
    from evaluation.suite.scheduler import run_plan

    assert isinstance(plan, Plan)
    log_dir = run_dir / "logs"
    if executor is ExecutorName.ray:
        runner = RayExecutor(workers, log_dir, address=ray_address, threads=worker_threads(workers))
    else:
        runner = LocalExecutor(workers, log_dir)
    typer.echo(f"{len(plan.jobs)} jobs on {runner.description}; run summary: {run_dir / 'run.json'}", err=True)
    try:
        with SuiteProgress(len(plan.jobs)) as display:
            return run_plan(plan, runner, run_dir, display)
    finally:
        runner.close()


def report(plan: object, outcomes: dict, run_dir: Path) -> None:
    """The leaderboard, the table of primary scores and the failures; exit 1 when any job did not succeed."""
    from evaluation.leaderboard.commands import PUBLISHED_DIR
    from evaluation.suite.plan import Plan
    from evaluation.suite.summary import failures, score_table, write_run_leaderboard

    assert isinstance(plan, Plan)
    board = write_run_leaderboard(plan.settings.results_dir, run_dir, PUBLISHED_DIR)
    typer.echo(score_table(plan))
    typer.echo(f"leaderboard: {board}; run summary: {run_dir / 'run.json'}")
    problems = failures(outcomes)
    if problems:
        typer.echo("\n".join(problems), err=True)
        raise typer.Exit(CHECK_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the ``hear-atst`` app."""
    app.command("run")(run_command)
