"""``hear-atst`` sub-commands for models and checkpoints: ``models``, ``convert``, ``validate``.

Each command is a plain function registered in :func:`register`; add a command by writing its function and
one ``app.command(...)`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hear_atst.checkpoints import CheckpointError
from hear_atst.encoders import FAMILIES, convert_checkpoint
from hear_atst.registry import MODELS
from hear_atst.validate import validate_command
from hear_atst.weights import WEIGHTS_DIR_ENV, WeightsNotFoundError, resolve_weights


def models() -> None:
    """List the registered models and whether their weights were found (in $HEAR_ATST_WEIGHTS)."""
    table = Table(title=f"registered models (weights looked up in ${WEIGHTS_DIR_ENV})")
    for column in ("name", "module", "weights", "description"):
        table.add_column(column, overflow="fold")
    for spec in MODELS.values():
        if not spec.needs_weights:
            weights = "not needed"
        else:
            try:
                weights = f"[green]{resolve_weights(spec, None)}[/green]"
            except WeightsNotFoundError:
                weights = f"[red]missing[/red] ({' | '.join(spec.weights_filenames)})"
        table.add_row(spec.name, spec.module, weights, spec.description)
    Console().print(table)


def convert(
    checkpoint: Annotated[Path, typer.Argument(help="official checkpoint (.ckpt/.pt/.pth) or a safetensors file")],
    out: Annotated[Path, typer.Argument(help="output .safetensors file (the encoder alone)")],
    kind: Annotated[
        str | None, typer.Option(help=f"encoder kind: {', '.join(FAMILIES)} (default: detected)")
    ] = None,
) -> None:
    """Extract the encoder of CHECKPOINT (teacher, or the ATST-C2F student) into a small safetensors file."""
    try:
        metadata = convert_checkpoint(checkpoint, out, kind)
    except (CheckpointError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes): kind {metadata['kind']}, config {metadata['config']}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``hear-atst`` app."""
    app.command("models")(models)
    app.command("convert")(convert)
    app.command("validate")(validate_command)
