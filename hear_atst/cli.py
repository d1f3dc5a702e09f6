"""``hear-atst``: one command line for models, tasks, evaluation and leaderboards.

Each area registers its own sub-commands; this file only assembles them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="hear-atst",
    help="Evaluate self-supervised audio encoders (ATST-Clip, ATST-Frame, ATST-C2F, ASiT) on HEAR tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: an option shows its value's type, a flag shows none (no "<bool>")
)

COMMAND_MODULES = (
    "hear_atst.commands",  # models, convert, validate
    "tasks.commands",  # tasks, prepare
    "evaluation.commands",  # embed, eval
    "evaluation.leaderboard.commands",  # leaderboard, regress
    "evaluation.suite.commands",  # run
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)
