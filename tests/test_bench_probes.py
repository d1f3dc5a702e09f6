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


def test_epoch_gemm_flops_counts_what_autograd_multiplies():
    import bench_probes
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    confs = [{"hidden_layers": 2, "hidden_dim": 32, "dropout": 0.1, "initialization": "xavier_uniform_"},
             {"hidden_layers": 1, "hidden_dim": 16, "dropout": 0.1, "initialization": "xavier_normal_"}]
    x, n_out = torch.randn(50, 24), 5
    counted = 0
    for conf in confs:
        head = bench_probes.kit_head(conf, x.shape[1], n_out)
        with FlopCounterMode(display=False) as counter:
            head(x).sum().backward()
        counted += counter.get_total_flops()
    assert bench_probes.epoch_gemm_flops(confs, x.shape[0], x.shape[1], n_out) == counted
