"""``hear-atst tasks`` (what can be prepared, what is on disk) and ``hear-atst prepare`` (build a task folder).

The audio pipeline is imported inside ``prepare``, so that ``hear-atst --help`` stays fast."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hear_atst.commands import USAGE_ERROR
from tasks.hear_format import HEAR_SAMPLE_RATES
from tasks.registry import (
    DEFAULT_TASKS_DIR,
    TASKS_DIR_ENV,
    all_specs,
    default_tasks_dir,
    duplicate_folders,
    get_spec,
    list_task_folders,
)

# Parentheses, not brackets: rich would take "[default: ...]" for markup and drop it.
TASKS_DIR_HELP = f"Folder of HEAR task folders (default: ${TASKS_DIR_ENV}, else ./{DEFAULT_TASKS_DIR})."
TASKS_DIR_OPTION = typer.Option(None, "--tasks-dir", help=TASKS_DIR_HELP)
TASK_ARGUMENT = typer.Argument(..., help="Registered task name or alias (see `hear-atst tasks`).")
SOURCE_OPTION = typer.Option(None, "--source", help="Official download: unpacked folder or archive(s).")
RATES_OPTION = typer.Option("16000", "--sample-rates", help="Comma-separated HEAR sample rates.")
MODE_OPTION = typer.Option(None, "--mode", help="full, 5h or small (default: the task's HEAR default).")
WORKERS_OPTION = typer.Option(None, "--workers", help="Audio threads (default: all cores).")


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise typer.BadParameter(f"--sample-rates must be comma-separated integers, got {text!r}") from error
    bad = [r for r in rates if r not in HEAR_SAMPLE_RATES]
    if not rates or bad:
        raise typer.BadParameter(f"--sample-rates must be among {HEAR_SAMPLE_RATES}, got {text!r}")
    return rates


def tasks_command(tasks_dir: Path | None = TASKS_DIR_OPTION) -> None:
    """List the registered tasks (what each needs, whether it is prepared) and any other task folder on disk."""
    tasks_dir = tasks_dir or default_tasks_dir()
    folders = list_task_folders(tasks_dir)
    try:
        table = _tasks_table(tasks_dir, folders)
    except ValueError as error:  # a broken task_metadata.json
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(USAGE_ERROR) from error
    console = Console()
    console.print(table)
    if not tasks_dir.is_dir():
        typer.secho(f"warning: {tasks_dir} is not a directory: nothing is prepared there yet", fg=typer.colors.YELLOW,
                    err=True)
    for name, paths in duplicate_folders(folders).items():
        typer.secho(f"warning: {name} is found more than once ({' and '.join(map(str, paths))}); looking it up "
                    "fails until one is removed", fg=typer.colors.YELLOW, err=True)
    console.print("--source needs:")
    for spec in all_specs():
        console.print(f"  {spec.name}: {spec.needs}", highlight=False)


def _tasks_table(tasks_dir: Path, folders: list[Path]) -> Table:
    """One row per mode of each registered task, then one per other task folder on disk (by its path there)."""
    from evaluation.taskfolder import folder_sample_rates, read_task_metadata

    on_disk = {folder.name: folder for folder in folders}
    table = Table(title=f"HEAR tasks ({tasks_dir})")
    for column in ("task", "folder", "kind", "clip s", "primary", "prepared"):
        table.add_column(column, overflow="fold")  # folder names stay whole in a narrow terminal
    shown: set[str] = set()
    for spec in all_specs():
        config = spec.config
        kind = f"{config['embedding_type']}/{config['prediction_type']}, {config['split_mode']}"
        name = spec.name + (f" ({', '.join(spec.aliases)})" if spec.aliases else "")
        for mode in spec.modes:
            folder = spec.folder_name(mode)
            shown.add(folder)
            duration = config["modes"][mode].get("sample_duration", config["sample_duration"])
            rates = folder_sample_rates(on_disk[folder]) if folder in on_disk else []
            prepared = ",".join(map(str, rates)) + " Hz" if rates else "no"
            table.add_row(name, folder, kind, str(duration), config["evaluation"][0], prepared)
            name = kind = ""
    for folder_name, folder in on_disk.items():
        if folder_name not in shown:
            meta = read_task_metadata(folder)
            rates = ",".join(map(str, folder_sample_rates(folder)))
            table.add_row(
                str(meta["task_name"]), str(folder.relative_to(tasks_dir)),
                f"{meta['embedding_type']}/{meta['prediction_type']}, {meta['split_mode']}",
                str(meta.get("sample_duration")), str(meta["evaluation"][0]), f"{rates} Hz (on disk)",
            )
    return table


def prepare_command(
    task: str = TASK_ARGUMENT,
    source: Path | None = SOURCE_OPTION,
    tasks_dir: Path | None = TASKS_DIR_OPTION,
    sample_rates: str = RATES_OPTION,
    mode: str | None = MODE_OPTION,
    workers: int | None = WORKERS_OPTION,
) -> None:
    """Build a HEAR task folder from the official download (downloaded when --source is not given)."""
    from tasks.download import SourceError
    from tasks.pipeline import PrepareError, prepare_task

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = get_spec(task)
    except KeyError as error:
        raise typer.BadParameter(str(error.args[0])) from error
    if spec.synthetic and source is not None:
        raise typer.BadParameter(f"{spec.name} is synthesised here and reads no --source")
    start = time.perf_counter()
    try:
        folder = prepare_task(
            spec, tasks_dir or default_tasks_dir(), source=source, sample_rates=_rates(sample_rates), mode=mode,
            workers=workers,
        )
    except (SourceError, PrepareError, FileNotFoundError, ValueError, RuntimeError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(USAGE_ERROR) from error
    typer.echo(f"{folder} ({time.perf_counter() - start:.1f} s)")


def register(app: typer.Typer) -> None:
    """Add ``tasks`` and ``prepare`` to the ``hear-atst`` app."""
    app.command("tasks")(tasks_command)
    app.command("prepare")(prepare_command)
