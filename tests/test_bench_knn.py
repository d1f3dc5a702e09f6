"""Smoke run of the kNN cost benchmark in its quick mode (it trains MLP grids too: marked slow)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_bench_knn_quick_times_both_probes(tmp_path):
    import bench_knn

    report = bench_knn.main(["--quick", "--out", str(tmp_path)])
    assert [row["problem"] for row in report["rows"]] == ["scene", "event"]
    for row in report["rows"]:
        assert row["knn_s"] > 0 and row["mlp_s"] > 0 and 0.0 <= row["knn_score"] <= 1.0
    assert report["rows"][0]["knn_score"] > 0.2  # five separable classes: chance 0.2
    assert not any(tmp_path.iterdir())  # --quick writes nothing
