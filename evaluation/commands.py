"""``hear-atst embed`` and ``hear-atst eval``.

Errors a user can fix (unknown model or task, missing weights or data, a broken task folder, a foreign cache)
print one message and exit with code 2, without a traceback. On success the last line of ``eval`` states the
primary score; progress and notes go to stderr.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from evaluation.probes.registry import PROBES
from evaluation.results import DEFAULT_EMBEDDINGS_DIR, DEFAULT_RESULTS_DIR
from hear_atst.commands import USAGE_ERROR
from hear_atst.registry import Precision, model_options
from tasks.commands import TASKS_DIR_HELP
from tasks.registry import default_tasks_dir

if TYPE_CHECKING:
    from evaluation.embeddings import ModelSetup
    from evaluation.taskfolder import TaskFolder

T = TypeVar("T")


Protocol = Enum("Protocol", {name: name for name in PROBES}, type=str)  # one per registered probe


class Grid(str, Enum):
    default = "default"
    fast = "fast"
    faster = "faster"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def _run(action: Callable[[], T]) -> T:
    """Run ``action``; a user-fixable error becomes one line on stderr and exit code 2."""
    try:
        return action()
    except (LookupError, OSError, ValueError) as error:  # KeyError/FileNotFoundError/TaskFolderError included
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(USAGE_ERROR) from None


def _log(message: str) -> None:
    typer.echo(message, err=True)


MODEL_HELP = ("Registered model (see `hear-atst models`), importable HEAR module (pkg.module), .py file, or a "
              "torch.nn.Module encoder class as module:Class or file.py:Class (docs/own-model.md).")


@dataclass(frozen=True)
class ModelTaskOptions:
    """The options ``embed`` and ``eval`` share: which model, on which task, from where to where."""

    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)]
    task: Annotated[str, typer.Option(
        "--task", help="Registered task or alias, task folder name, or its task_name; `demo` is built on first use.")]
    weights: Annotated[Path | None, typer.Option("--weights", help="Checkpoint file (else $HEAR_ATST_WEIGHTS).")
                       ] = None
    model_option: Annotated[list[str] | None, typer.Option(
        "--model-option", help="KEY=VALUE passed to load_model (repeatable; JSON values parsed).")] = None
    model_options_json: Annotated[str | None, typer.Option(
        "--model-options", help="JSON object of keyword arguments for load_model (the HEAR kit's form), e.g. "
        "'{\"blocks\": 1}'.")] = None
    tasks_dir: Annotated[Path | None, typer.Option("--tasks-dir", help=TASKS_DIR_HELP)] = None
    embeddings_dir: Annotated[Path, typer.Option(
        "--embeddings-dir", help="Embedding cache (the HEAR kit's layout).")] = Path(DEFAULT_EMBEDDINGS_DIR)
    device: Annotated[Device, typer.Option(
        "--device", help="Where to run the model (and, for eval, the probes).")] = Device.cpu
    precision: Annotated[Precision, typer.Option("--precision", help="Model precision (bf16 autocast).")
                         ] = Precision.fp32

    def resolve(self) -> tuple[ModelSetup, TaskFolder]:
        """The model with its weights found and hashed, and the validated task folder (usage errors exit 2)."""
        from evaluation.runner import load_task_folder, resolve_model

        setup = _run(lambda: resolve_model(self.model, self.weights,
                                           model_options(self.model_option, self.model_options_json),
                                           self.precision.value, self.device.value))
        folder = _run(lambda: load_task_folder(self.task, self.tasks_dir or default_tasks_dir(), log=_log))
        return setup, folder


def with_model_task_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command(options: ModelTaskOptions, ...)`` as a typer command taking the shared options first, then its own."""
    hints = typing.get_type_hints(ModelTaskOptions, include_extras=True)
    shared = [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[field.name],
                                default=inspect.Parameter.empty if field.default is dataclasses.MISSING
                                else field.default)
              for field in dataclasses.fields(ModelTaskOptions)]
    own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]

    @functools.wraps(command)
    def typer_command(**values: Any) -> None:
        options = ModelTaskOptions(**{parameter.name: values.pop(parameter.name) for parameter in shared})
        command(options, **values)

    typer_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in shared + own])
    return typer_command


QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress display or notes on stderr (errors still).")]


@with_model_task_options
def embed_command(options: ModelTaskOptions, quiet: QuietOpt = False) -> None:
    """Embed a task in the HEAR kit's layout (cached; an interrupted run resumes)."""
    from evaluation.runner import embed

    setup, folder = options.resolve()
    path = _run(lambda: embed(setup, folder, options.embeddings_dir, progress=not quiet,
                              log=None if quiet else _log))
    typer.echo(f"{folder.name} embeddings: {path}")


@with_model_task_options
def eval_command(
    options: ModelTaskOptions,
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Where results.json goes.")] = Path(
        DEFAULT_RESULTS_DIR),
    protocol: Annotated[Protocol, typer.Option(
        "--protocol", help="hear: the kit's MLP grid; linear: EVAR's probe; knn: cosine k-nearest neighbours (no "
        "training).")] = Protocol.hear,
    grid: Annotated[Grid, typer.Option("--grid", help="The kit's hyper-parameter grid (hear protocol).")
                    ] = Grid.default,
    grid_points: Annotated[int | None, typer.Option(
        "--grid-points", min=1, help="Grid points sampled from --grid (the kit's --grid-points, default 8; hear "
        "protocol).")] = None,
    max_epochs: Annotated[int | None, typer.Option(
        "--max-epochs", min=1, help="Cap every probe's epochs (smoke runs only; labelled in the results folder).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Number of seeds (0..N-1).")] = 1,
    linear_lr: Annotated[float | None, typer.Option(
        "--linear-lr", min=0.0, help="Adam learning rate of --protocol linear (EVAR's default 3e-4; its ATST-Frame "
        "config uses 3e-5).")] = None,
    no_shuffle: Annotated[bool, typer.Option(
        "--no-shuffle", help="Never shuffle training batches (the HEAR kit's behaviour; hear protocol only).")] = False,
    stop_on_non_finite: Annotated[bool, typer.Option(
        "--stop-on-non-finite", help="End a head's training at its first NaN or infinite validation score (the HEAR "
        "kit's early stopping; hear protocol only); by default training goes on.")] = False,
    knn_standardize: Annotated[bool, typer.Option(
        "--knn-standardize", help="Standardise embeddings with each fold's training statistics before the cosine "
        "similarity (knn protocol only).")] = False,
    no_psds: Annotated[bool, typer.Option(
        "--no-psds", help="Leave PSDS (scenario 1, an extra score of event tasks) out.")] = False,
    probe_precision: Annotated[Precision, typer.Option(
        "--probe-precision", help="Probe training GEMMs (bf16: float32 master weights, Adam and BatchNorm).")
    ] = Precision.fp32,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="State the work and its calibrated time estimate, then stop (no file is left).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed (cached) -> probe -> score one task; writes results.json and test.predicted-scores.json."""
    from evaluation.estimate import estimate_run
    from evaluation.probes.registry import training_protocols
    from evaluation.progress import ProgressDisplay
    from evaluation.protocol import ProbeConfig, check_probe_settings
    from evaluation.runner import check_run_inputs, run_eval

    flags_of = {"hear": (("--no-shuffle", no_shuffle), ("--stop-on-non-finite", stop_on_non_finite),
                         ("--grid", grid is not Grid.default), ("--grid-points", grid_points is not None)),
                "linear": (("--linear-lr", linear_lr is not None),),
                "knn": (("--knn-standardize", knn_standardize),)}
    for owner, flags in flags_of.items():
        misplaced = [flag for flag, given in flags if given]
        if misplaced and protocol.value != owner:
            verb = "applies" if len(misplaced) == 1 else "apply"
            typer.echo(f"error: {', '.join(misplaced)} {verb} to --protocol {owner} only", err=True)
            raise typer.Exit(USAGE_ERROR)
    if max_epochs is not None and protocol.value not in training_protocols():
        typer.echo(f"error: --max-epochs applies to the probes that train ({', '.join(training_protocols())}) only; "
                   f"--protocol {protocol.value} does not train", err=True)
        raise typer.Exit(USAGE_ERROR)
    given = {key: value for key, value in (("linear_lr", linear_lr), ("grid_points", grid_points)) if value is not None}
    try:
        probe = ProbeConfig(protocol=protocol.value, seeds=list(range(seeds)), shuffle=not no_shuffle,
                            stop_on_non_finite=stop_on_non_finite, psds=not no_psds, grid=grid.value,
                            knn_standardize=knn_standardize, max_epochs=max_epochs, device=options.device.value,
                            precision=probe_precision.value, **given)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(USAGE_ERROR) from error
    setup, folder = options.resolve()
    if dry_run:
        _run(lambda: check_probe_settings(probe, folder.metadata))
    else:  # before the plan's calibration: a bad setting or an unwritable folder fails before any work
        _run(lambda: check_run_inputs(setup, folder, probe, options.embeddings_dir, results_dir))
    if dry_run or not quiet:
        for line in _run(lambda: estimate_run(setup, folder, options.embeddings_dir, probe)).lines():
            (typer.echo if dry_run else _log)(line)
    if dry_run:
        return
    with ProgressDisplay() if not quiet else nullcontext() as display:
        outcome = _run(lambda: run_eval(setup, folder, embeddings_dir=options.embeddings_dir,
                                        results_dir=results_dir, probe=probe, progress=not quiet,
                                        log=None if quiet else _log, probe_progress=display))
    if not quiet:
        _log(f"results: {outcome.results_path}")
    typer.echo(outcome.summary_line())


def register(app: typer.Typer) -> None:
    """Add ``embed`` and ``eval`` to the ``hear-atst`` app."""
    app.command("embed")(embed_command)
    app.command("eval")(eval_command)
