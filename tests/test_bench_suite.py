"""The suite-runner benchmark's quick mode runs all three configurations and writes nothing (slow: three runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_suite_quick(shared_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_suite.py"), "--quick", "--shared",
                                str(shared_dir)], capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout.split("(--quick")[0])
    assert [(run["executor"], run["workers"]) for run in document["runs"]] == [("local", 1), ("local", 2), ("ray", 2)]
    assert all(run["jobs_run"] == 2 and run["wall_s"] > 0 for run in document["runs"])
    assert "ray_overhead_per_job_s" in document["runs"][2]
