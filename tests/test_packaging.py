"""A plain (non-editable) ``pip install .`` into a fresh virtual environment gives a working ``hear-atst`` whose
``leaderboard`` finds the published tables shipped as package data, far from any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pandas as pd
from leaderboard_helpers import make_results, write_results

REPO = Path(__file__).resolve().parents[1]


def test_a_non_editable_install_finds_the_published_tables(tmp_path: Path) -> None:
    source = Path(shutil.copytree(REPO, tmp_path / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "__pycache__", "*.egg-info", "build", "embeddings")))
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no checkout on the path
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=clean).stdout.strip())
    # pip, setuptools and the dependencies (torch, pandas ...) come from this interpreter's site-packages, appended
    # after the new environment's own (a path from a .pth file is no site folder: editable-install hooks stay inert)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(source)], check=True, cwd=tmp_path, env=clean)
    shutil.rmtree(source)  # nothing may be read from a checkout

    located = subprocess.run([python, "-c", "import evaluation.leaderboard.commands as c; print(c.PUBLISHED_DIR)"],
                             capture_output=True, text=True, check=True, cwd=tmp_path, env=clean).stdout.strip()
    assert Path(located).is_relative_to(site)
    assert sorted(p.name for p in Path(located).glob("*.csv")) == ["evar_linear.csv", "hear_leaderboard.csv",
                                                                   "papers.csv"]

    runs = tmp_path / "runs"
    write_results(runs, make_results("mel", "esc50", "esc50-v2.0.0-full", {"fold00": 0.5, "fold01": 0.6}))
    done = subprocess.run([env_dir / "bin" / "hear-atst", "leaderboard", "--results-dir", str(runs), "--out", "board"],
                          capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "board" / "leaderboard.csv", keep_default_na=False)
    published = table[table["row"] == "published"]
    assert len(published) > 0 and set(published["task"]) == {"esc50"}
    assert (table["row"] == "run").sum() == 1
