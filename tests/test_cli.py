"""The ``hear-atst`` command line: every command is listed, and help never pays for a numerical library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

COMMANDS = ("models", "convert", "validate", "tasks", "prepare", "embed", "eval", "leaderboard", "regress", "run")
HEAVY = ("numpy", "pandas", "torch", "soundfile", "soxr", "scipy", "matplotlib", "sklearn", "sed_eval", "dcase_util",
         "psds_eval", "safetensors", "torchcrepe", "ray", "tensorflow")  # every numerical or ML dependency

PROBE = f"""
import json, sys
from typer.testing import CliRunner
from hear_atst.cli import app
result = CliRunner().invoke(app, sys.argv[1:], env={{"COLUMNS": "200"}})
print(json.dumps({{"exit_code": result.exit_code, "output": result.output,
                  "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def run_cli(*args: str) -> dict:
    """Invoke the app in a fresh interpreter and report which heavy libraries it imported."""
    completed = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout)


def test_top_level_help_lists_every_command_without_heavy_imports() -> None:
    result = run_cli("--help")
    assert result["exit_code"] == 0, result["output"]
    for command in COMMANDS:
        assert f" {command} " in result["output"]
    assert result["heavy"] == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_without_heavy_imports(command: str) -> None:
    result = run_cli(command, "--help")
    assert result["exit_code"] == 0, result["output"]
    assert "Usage:" in result["output"] and result["heavy"] == []
    assert "<bool>" not in result["output"]  # a flag takes no value, so its help shows no type


@pytest.mark.parametrize("command", ["tasks", "prepare", "embed", "eval"])
def test_every_task_folder_command_names_the_same_default(command: str) -> None:
    # rich reads "[default: ...]" as markup and drops it: the default must survive into the printed help
    output = " ".join(run_cli(command, "--help")["output"].replace("│", " ").split())
    assert "(default: $HEAR_ATST_TASKS, else ./tasks_data)" in output
