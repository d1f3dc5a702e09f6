"""Smoke run of the probe benchmark in reduced size (slow on a shared 2-core machine: marked slow)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_bench_probes_quick_runs_both_implementations():
    import bench_probes

    report = bench_probes.main(["--quick"])
    assert [row["problem"] for row in report["rows"]] == ["scene768", "event"]
    for row in report["rows"]:
        assert row["reference_s"] > 0 and row["ours_fp32_s"] > 0 and row["ours_bf16_s"] > 0
        assert 0.0 <= row["reference_score"] <= 1.0
        assert 0.0 <= row["ours_fp32_score"] <= 1.0 and 0.0 <= row["ours_bf16_score"] <= 1.0
