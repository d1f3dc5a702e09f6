"""``hear-atst run``: many models × tasks × seeds as one planned, resumable job, on local worker processes or Ray.

Exit codes: 0 when every job succeeded (or was already complete), 1 when any failed (listed at the end), 2 for
problems found before any work started (all of them, one line each). Heavy modules are imported inside the
command so that ``hear-atst --help`` stays fast.
"""

from __future__ import annotations

import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evaluation.commands import Device, Grid
from evaluation.results import DEFAULT_EMBEDDINGS_DIR, DEFAULT_RESULTS_DIR
from hear_atst.commands import CHECK_FAILED, USAGE_ERROR
from hear_atst.registry import Precision
from tasks.commands import TASKS_DIR_HELP

if TYPE_CHECKING:
    from evaluation.protocol import ProbeConfig
    from evaluation.suite.plan import Plan, Settings
    from evaluation.suite.suites import Suite

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
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated models, in any form `eval` accepts "
                                               "(a suite that names its models: some of those).")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", help="Comma-separated tasks (as `eval --task`).")] = None,
    suite: Annotated[str | None, typer.Option(
        "--suite", help="A suite shipped with hear-atst (hear2021, atst-papers, ci) or a suite .toml file.")] = None,
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
    protocol: Annotated[str | None, typer.Option("--protocol", help="Comma-separated probes: hear (default), linear, "
                                                 "knn.")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="Seeds 0..N-1 of every probe (default 1).")
                     ] = None,
    grid: Annotated[Grid | None, typer.Option("--grid", help="The kit's grid (hear protocol; default: default).")
                    ] = None,
    grid_points: Annotated[int | None, typer.Option("--grid-points", min=1, help="Grid points (hear protocol).")
                           ] = None,
    max_epochs: Annotated[int | None, typer.Option("--max-epochs", min=1, help="Cap the epochs of every probe that "
                                                   "trains (smoke runs; labelled in the results folder).")] = None,
    no_psds: Annotated[bool, typer.Option("--no-psds", help="Leave PSDS out of event tasks.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Where models and probes run (ray: embedding jobs ask "
                                           "for one GPU each with cuda).")] = Device.cpu,
    precision: Annotated[Precision, typer.Option("--precision", help="Model precision.")] = Precision.fp32,
    shared: Annotated[Path | None, typer.Option(
        "--shared", help="The shared data folder a suite's tasks are prepared from (suite ci; default: "
        "$HEAR_ATST_SHARED, else ../shared beside this checkout).")] = None,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", help=f"run.json, job logs and the leaderboard (default: <results-dir>/{RUNS_FOLDER}/<time>).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (with sizes) and stop.")] = False,
) -> None:
    """Plan and run models × tasks × seeds: prepare each task once, embed once per (model, task), probe per
    (model, task, protocol); skip what is complete; end with run.json, the leaderboard and a table of scores."""
    from evaluation.suite.plan import ModelRequest, PlanError, Settings, build_plan
    from evaluation.suite.suites import SuiteError, load_suite
    from tasks.registry import default_tasks_dir

    model_names = _split(models)
    if (tasks is None) == (suite is None):
        raise _fail("give exactly one of --tasks and --suite")
    try:
        loaded = load_suite(suite) if suite is not None else None
    except SuiteError as error:
        raise _fail(str(error)) from None
    settings = Settings(tasks_dir or default_tasks_dir(), embeddings_dir, results_dir, device.value, precision.value)
    try:
        if loaded is not None and loaded.models:
            probe_flags = (("--protocol", protocol), ("--seeds", seeds), ("--grid", grid),
                           ("--grid-points", grid_points), ("--max-epochs", max_epochs),
                           ("--no-psds", no_psds or None), ("--weights", weights))
            plan = pair_suite_plan(loaded, model_names, [flag for flag, value in probe_flags if value is not None],
                                   settings, shared)
        else:
            if not model_names:
                raise _fail("--models names no model")
            task_names = loaded.folders() if loaded is not None else _split(tasks)
            model_weights = _weights(weights, model_names)
            probes = probe_configs(_split(protocol or "hear"), seeds or 1, grid, grid_points, max_epochs, no_psds,
                                   device.value)
            requests = [ModelRequest(name, model_weights.get(name)) for name in model_names]
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


def probe_configs(protocols: list[str], seeds: int, grid: Grid | None, grid_points: int | None,
                  max_epochs: int | None, no_psds: bool, device: str) -> list[ProbeConfig]:
    """One ProbeConfig per protocol. ``--grid``/``--grid-points`` apply to the hear probe, ``--max-epochs`` to the
    probes that train (not knn); a flag that applies to none of ``protocols`` is a usage error."""
    from evaluation.probes.registry import probe_class, training_protocols
    from evaluation.protocol import ProbeConfig

    if not protocols:
        raise _fail("--protocol names no probe")
    for name in protocols:
        try:
            probe_class(name)
        except ValueError as error:
            raise _fail(f"--protocol {name}: {error}") from None
    trained = training_protocols()
    if max_epochs is not None and not set(protocols) & set(trained):
        raise _fail(f"--max-epochs applies to the probes that train ({', '.join(trained)}); --protocol "
                    f"{','.join(protocols)} trains none")
    if (grid is not None or grid_points is not None) and "hear" not in protocols:
        raise _fail("--grid and --grid-points apply to --protocol hear only")
    probes = []
    for name in protocols:
        given = {"grid_points": grid_points} if grid_points is not None and name == "hear" else {}
        try:
            probes.append(ProbeConfig(protocol=name, seeds=list(range(seeds)),
                                      grid=(grid or Grid.default).value if name == "hear" else "default",
                                      max_epochs=max_epochs if name in trained else None, psds=not no_psds,
                                      device=device, **given))
        except ValueError as error:
            raise _fail(f"--protocol {name}: {error}") from None
    return probes


def pair_suite_plan(suite: Suite, model_names: list[str], probe_flags: list[str], settings: Settings,
                    shared: Path | None) -> Plan:
    """The plan of a suite that names its models, pairs and probes (``ci``): its tasks prepared from ``../shared``
    into ``--tasks-dir`` first (a complete folder is kept), then its pairs (of ``--models`` only, when given)."""
    import dataclasses
    import tempfile

    from evaluation.suite.pairs import plan_pairs
    from evaluation.suite.shared_tasks import prepare_tasks, resolve_shared
    from tasks.download import SourceError
    from tasks.pipeline import PrepareError

    if probe_flags:
        raise _fail(f"suite {suite.name} names its models' weights, probes and seeds: {', '.join(probe_flags)} "
                    "do not apply to it")
    unknown = [name for name in model_names if name not in suite.models]
    if unknown:
        raise _fail(f"--models {','.join(unknown)}: not a model of suite {suite.name} ({', '.join(suite.models)})")
    pairs = [(model, task) for model, task in suite.pairs if not model_names or model in model_names]
    used = dataclasses.replace(suite, tasks={key: task for key, task in suite.tasks.items()
                                             if key in {task for _, task in pairs}})
    needs_shared = any(task.prepare for task in used.tasks.values()) or any(
        suite.models[model].weights for model, _ in pairs)
    try:
        shared_dir = resolve_shared(suite, override=shared) if needs_shared else None
        with tempfile.TemporaryDirectory(prefix="hear-atst-layouts-") as work:
            prepare_tasks(used, shared_dir, Path(work), lambda line: typer.echo(line, err=True), settings.tasks_dir)
    except (FileNotFoundError, SourceError, PrepareError, RuntimeError, ValueError, OSError) as error:
        raise _fail(f"suite {suite.name}: its tasks could not be prepared: {error}") from None
    return plan_pairs(suite, shared_dir, settings, pairs).plan


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
