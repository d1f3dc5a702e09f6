"""``hear-atst leaderboard`` (aggregate runs next to the published tables) and ``hear-atst regress`` (the CI gate).

Their modules are imported inside the commands, so that ``hear-atst --help`` stays fast."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from hear_atst.commands import CHECK_FAILED, USAGE_ERROR

SHARED_HELP = ("The shared data folder the suite's tasks are prepared from (default: $HEAR_ATST_SHARED, else "
               "../shared beside the checkout holding the baseline file).")
WORK_HELP = "Keep task folders, embeddings and results here (empty or absent; default: a temporary folder, removed)."
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"  # the checkout's, wherever a command runs
PUBLISHED_DIR = Path(__file__).resolve().parent / "published_tables"  # package data: found by any install
REGRESSION_FILE = RESULTS_DIR / "regression.json"


def leaderboard_command(
    results_dir: Annotated[Path, typer.Option(help="Scanned for **/results.json.")] = Path("results/runs"),
    published: Annotated[Path, typer.Option(help="Folder of published tables (*.csv; default: the tables installed "
                                            "with hear-atst).")] = PUBLISHED_DIR,
    out: Annotated[Path, typer.Option(help="Where leaderboard.csv/.md/.html are written.")] = Path("results"),
    all_runs: Annotated[bool, typer.Option(help="Keep every run, not only one per (model, task, protocol): the one "
                                                "with the most seeds, then the latest.")] = False,
    html: Annotated[bool, typer.Option(
        help="Also write the self-contained leaderboard.html (with an event timeline per run with test.events.json)."
    )] = False,
) -> None:
    """Aggregate every run under --results-dir into leaderboard.csv / leaderboard.md (and .html), next to the
    published rows; a published row is ranked with a run only when protocol and metric are the same."""
    from evaluation.leaderboard.report import write_leaderboard

    try:
        files = write_leaderboard(results_dir, published, out, latest_only=not all_runs, with_html=html)
    except (FileNotFoundError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(USAGE_ERROR) from error
    for choice in files.choices:
        typer.echo(f"kept {choice}", err=True)
    written = [files.csv, files.markdown, *([files.html] if files.html else [])]
    count = len(files.runs)
    typer.echo(f"{count} run{'' if count == 1 else 's'} -> " + ", ".join(str(path) for path in written))


def regress_command(
    baseline: Annotated[Path, typer.Option(help="The recorded baseline and tolerances, naming the suite that runs "
                                           "(default: this checkout's results/regression.json, suite ci, wherever "
                                           "the command runs).")] = REGRESSION_FILE,
    update: Annotated[bool, typer.Option(help="Record this run as the new baseline (deliberately).")] = False,
    shared: Annotated[Path | None, typer.Option(help=SHARED_HELP)] = None,
    work_dir: Annotated[Path | None, typer.Option(help=WORK_HELP)] = None,
    workers: Annotated[int, typer.Option(min=1, help="Pairs run at once on the suite runner (local worker "
                                         "processes, torch threads divided between them).")] = 1,
) -> None:
    """Re-run the small real benchmark of --baseline; fail with a table when a score falls below its baseline by
    more than its tolerance, is no better than a constant prediction's, is missing, or when a run is not
    deterministic."""
    from evaluation.leaderboard.baseline import load_regression, updated_document
    from evaluation.leaderboard.gate import gate
    from evaluation.leaderboard.gate_table import render_gate
    from evaluation.leaderboard.regress import run_suite
    from evaluation.results import write_json_atomic
    from evaluation.suite.shared_tasks import resolve_shared
    from tasks.download import SourceError
    from tasks.pipeline import PrepareError

    try:
        suite, recorded, _ = load_regression(baseline)
        shared_dir = resolve_shared(suite, baseline, shared)
        if work_dir is not None and work_dir.exists() and (not work_dir.is_dir() or any(work_dir.iterdir())):
            raise ValueError(f"--work-dir {work_dir}: " + ("not a folder" if not work_dir.is_dir() else
                                                           "not empty (the gate needs a fresh run)"))
    except (FileNotFoundError, ValueError) as error:  # RegressionFileError is a ValueError
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(USAGE_ERROR) from None
    work = work_dir or Path(tempfile.mkdtemp(prefix="hear-atst-regress-"))
    try:
        run = run_suite(suite, shared_dir, work, log=typer.echo, workers=workers)
    except (SourceError, PrepareError, FileNotFoundError, LookupError, RuntimeError, ValueError) as error:
        typer.secho(f"error: the suite could not run: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(USAGE_ERROR) from error
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    typer.echo(f"suite ran in {run.seconds:.0f} s ({run.cpu_seconds:.0f} s CPU)")
    refused = None
    if update:
        try:
            write_json_atomic(baseline, updated_document(suite, recorded, run))
            typer.echo(f"baseline recorded in {baseline}")
            recorded = load_regression(baseline)[1]
        except RuntimeError as error:  # nondeterministic, missing or uninformative scores: the old baseline stays
            refused = error
    rows = gate(suite, recorded, run)  # shown also when the update is refused: the run's scores are not lost
    typer.echo(render_gate(rows))
    if refused is not None:
        typer.secho(f"error: baseline not updated: {refused}", fg=typer.colors.RED, err=True)
    if refused is not None or any(row.failed for row in rows):
        raise typer.Exit(CHECK_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``leaderboard`` and ``regress`` to the ``hear-atst`` app."""
    app.command("leaderboard")(leaderboard_command)
    app.command("regress")(regress_command)
