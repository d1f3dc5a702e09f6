"""``hear-atst`` sub-commands for models and checkpoints: ``models``, ``convert``, ``validate``.

Each command is a plain function registered in :func:`register`; add a command by writing its function and
one ``app.command(...)`` line. Modules that import torch are imported inside the commands, so that
``hear-atst --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hear_atst.registry import (
    ENCODER_FAMILIES,
    MODELS,
    Precision,
    check_model_options,
    find_model_spec,
    model_options,
)
from hear_atst.weights import WEIGHTS_DIR_ENV, WeightsNotFoundError, resolve_weights, weights_for_options

CHECK_FAILED = 1  # exit code of every command: a check failed (validate, regress)
USAGE_ERROR = 2  # ... a usage or input error (one line on stderr), as click's own usage errors


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
        str | None, typer.Option(help=f"encoder kind: {', '.join(ENCODER_FAMILIES)} (default: detected)")
    ] = None,
) -> None:
    """Extract the encoder of CHECKPOINT (teacher, or the ATST-C2F student) into a small safetensors file."""
    from hear_atst.checkpoints import CheckpointError
    from hear_atst.encoders import convert_checkpoint

    try:
        if not checkpoint.is_file():
            raise ValueError(f"{checkpoint}: no such checkpoint file")
        if out.is_dir():
            raise ValueError(f"{out} is a directory: give the output file's name (e.g. {out / 'encoder.safetensors'})")
        metadata = convert_checkpoint(checkpoint, out, kind)
    except (CheckpointError, ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(USAGE_ERROR) from None
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes): kind {metadata['kind']}, config {metadata['config']}")


def validate(
    module: Annotated[str, typer.Argument(help="Registered model (atst_frame), HEAR module path, .py file, or encoder "
                                               "class as module:Class / file.py:Class (docs/own-model.md).")],
    weights: Annotated[Path | None, typer.Option("--weights", help="Checkpoint file passed to load_model.")] = None,
    model_option: Annotated[list[str] | None, typer.Option(
        "--model-option", help="KEY=VALUE passed to load_model (VALUE parsed as JSON when valid), repeatable.")] = None,
    model_options_json: Annotated[str | None, typer.Option(
        "--model-options", help="JSON object of load_model keyword arguments (the HEAR kit's form).")] = None,
    long_seconds: Annotated[float | None, typer.Option(
        "--long-seconds", help="Length of the long-audio check, at least 60 s (default: 1200, HEAR's 20 minutes).")
    ] = None,
    precision: Annotated[Precision, typer.Option("--precision", help="Model precision (bf16 autocast).")
                         ] = Precision.fp32,
) -> None:
    """Strict HEAR validation of one model: prints a table; exit code 1 when a check fails."""
    from hear_atst.validate import LONG_SECONDS, MIN_LONG_SECONDS, validate_loaded, validate_module

    long_seconds = LONG_SECONDS if long_seconds is None else long_seconds
    try:
        options = model_options(model_option, model_options_json)
        if "precision" in options:
            raise ValueError("set the model's precision with --precision, not --model-option precision=...")
        if long_seconds < MIN_LONG_SECONDS:
            raise ValueError(f"--long-seconds {long_seconds:g}: the long-audio check needs at least "
                             f"{MIN_LONG_SECONDS:g} s")
        spec = find_model_spec(module)
        if spec is not None:  # the checks of embed and eval: their usage errors are usage errors here too
            check_model_options(spec.name, spec.module, options)
            weights_for_options(spec, weights, options)
            setup = None
        else:
            from evaluation.runner import resolve_model

            setup = resolve_model(module, weights, options, precision.value)
    except (LookupError, ValueError, WeightsNotFoundError) as error:
        typer.echo(f"error: {error.args[0] if isinstance(error, KeyError) else error}", err=True)
        raise typer.Exit(USAGE_ERROR) from None
    if setup is not None:
        foreign = setup.source
        assert foreign is not None  # every model that is not registered is from elsewhere
        note = foreign.precision_note(precision.value)
        if note:
            typer.echo(note, err=True)
        results = validate_loaded(lambda: foreign.load(setup.weights, setup.options, setup.precision, setup.device,
                                                       check=False),
                                  long_seconds=long_seconds, precision=precision.value)
    else:
        if precision is not Precision.fp32:  # the registered modules take the option
            options["precision"] = precision.value
        results = validate_module(spec.module, weights, long_seconds=long_seconds, **options)
    table = Table(title=f"hear-atst validate {module}")
    for column in ("check", "status", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"pass": "green", "fail": "red", "warn": "yellow", "info": "cyan"}
    for result in results:
        table.add_row(result.name, f"[{colours[result.status]}]{result.status}[/]", result.detail)
    Console().print(table)
    failed = [r.name for r in results if not r.passed]
    if failed:
        typer.echo(f"FAILED: {', '.join(failed)}", err=True)
        raise typer.Exit(CHECK_FAILED)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``hear-atst`` app."""
    app.command("models")(models)
    app.command("convert")(convert)
    app.command("validate")(validate)
