"""Smoke run of the probe benchmark in reduced size (slow on a shared 2-core machine: marked slow), and the FLOP
count of the kit protocol's heads (``benchmarks/`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_bench_probes_quick_runs_both_implementations():
    import bench_probes

    report = bench_probes.main(["--quick"])
    assert [row["problem"] for row in report["rows"]] == ["scene768", "event"]
    for row in report["rows"]:
        assert row["reference_s"] > 0 and row["ours_fp32_s"] > 0 and row["ours_bf16_s"] > 0
        assert 0.0 <= row["reference_score"] <= 1.0
        assert 0.0 <= row["ours_fp32_score"] <= 1.0 and 0.0 <= row["ours_bf16_score"] <= 1.0
        # epochs trained by every head: at least one validation interval per grid point and per other fold
        assert row["reference_head_epochs"] >= 3 * (2 + 4 * (row["problem"] == "scene768"))
        assert row["ours_fp32_head_epochs"] >= 3 * (2 + 4 * (row["problem"] == "scene768"))


def test_epoch_gemm_flops_counts_what_autograd_multiplies():
    import bench_probes
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from evaluation.kit_protocol import kit_head

    confs = [{"hidden_layers": 2, "hidden_dim": 32, "dropout": 0.1, "initialization": "xavier_uniform_"},
             {"hidden_layers": 1, "hidden_dim": 16, "dropout": 0.1, "initialization": "xavier_normal_"}]
    x, n_out = torch.randn(50, 24), 5
    counted = 0
    for conf in confs:
        head = kit_head(conf, x.shape[1], n_out)
        with FlopCounterMode(display=False) as counter:
            head(x).sum().backward()
        counted += counter.get_total_flops()
    assert bench_probes.epoch_gemm_flops(confs, x.shape[0], x.shape[1], n_out) == counted


def test_cuda_without_a_gpu_is_a_usage_error(monkeypatch, capsys):
    import bench_probes
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as error:
        bench_probes.main(["--quick", "--device", "cuda"])
    assert error.value.code == 2
    assert "--device cuda: no CUDA device is available" in capsys.readouterr().err


def test_markdown_claims_no_cpu_on_a_gpu_run(tmp_path):
    import bench_probes

    row = {"problem": "scene768", "grid_points": 8, "max_epochs_cap": 500, "reference_s": 9.0, "ours_fp32_s": 3.0,
           "ours_bf16_s": 2.0, "speedup_fp32": 3.0, "speedup_bf16": 4.5, "reference_score": 0.5,
           "ours_fp32_score": 0.5, "ours_bf16_score": 0.5, "score_difference_fp32": 0.0, "score_difference_bf16": 0.0}
    report = {"device": "cuda", "machine": "NVIDIA H200 (CUDA 13.0), host CPU x; both sides trained on the GPU.",
              "rows": [row]}
    bench_probes.write_markdown(report, tmp_path / "full.md")
    text = (tmp_path / "full.md").read_text()
    assert "this CPU" not in text and "not run" not in text  # the kit's 500 epochs cap nothing
    bench_probes.write_markdown({**report, "rows": [{**row, "max_epochs_cap": 15}]}, tmp_path / "capped.md")
    assert "Full 500-epoch grids were not run on this GPU" in (tmp_path / "capped.md").read_text()


def test_event_components_time_both_sides_and_extrapolate_consistently():
    import bench_probes

    row = bench_probes.event_components(bench_probes.event_problem(5, 200, 16), 2, 0.5, "cpu")
    for key in ("reference_epoch_s", "reference_check_s", "ours_check_s", "ours_epoch_fp32_s", "ours_epoch_bf16_s"):
        assert row[key] > 0
    for label, epochs in (("min", 210), ("max", 500)):
        reference = epochs * row["reference_epoch_s"] + epochs // 10 * row["reference_check_s"]
        assert row[f"extrapolated_{label}_reference_s"] == pytest.approx(reference)
        assert row[f"extrapolated_{label}_speedup_fp32"] == pytest.approx(
            reference / row[f"extrapolated_{label}_ours_fp32_s"])


def test_probe_epochs_quick_counts_every_heads_epochs(tmp_path):
    import probe_epochs

    report = probe_epochs.main(["--quick", "--dims", "16", "--seeds", "0", "1", "--kit-seeds", "3",
                                "--out", str(tmp_path)])
    assert [(row["implementation"], row["order"], row["seed"]) for row in report["rows"]] == [
        ("ours", "kit (fixed)", 0), ("ours", "shuffled", 0), ("ours", "shuffled", 1),
        ("kit protocol", "kit (fixed)", 3)]
    assert report["rows"][-1]["precision"] == "fp32"
    for row in report["rows"]:
        # 8 grid points on the first fold, then the chosen point on 4 more folds; 6 epochs at most each
        assert len(row["grid_epochs"]) == 8 and len(row["fold_epochs"]) == 5
        assert row["head_epochs"] == sum(row["grid_epochs"]) + sum(row["fold_epochs"][1:]) <= 6 * 12
        assert 0.0 <= row["score"] <= 1.0
    probe_epochs.write_markdown(report, tmp_path / "epochs.md")
    text = (tmp_path / "epochs.md").read_text()
    assert "| 16 | ours | kit (fixed) | bf16 | 0 |" in text and "| 16 | kit protocol | kit (fixed) | fp32 | 3 |" in text
    assert "D = 16, ours, shuffled, bf16, 2 seeds" in text


def test_probe_epochs_append_replaces_rows_of_the_same_run():
    import probe_epochs

    def row(implementation, seed, epochs):
        return {"dim": 768, "implementation": implementation, "order": "kit (fixed)", "seed": seed,
                "precision": "fp32" if implementation == "kit protocol" else "bf16", "head_epochs": epochs}

    previous = [row("kit protocol", 0, 10), row("ours", 1, 20), row("ours", 0, 30)]
    merged = probe_epochs.merge_rows(previous, [row("kit protocol", 0, 11), row("kit protocol", 2, 12)])
    assert [(r["implementation"], r["seed"], r["head_epochs"]) for r in merged] == [
        ("ours", 0, 30), ("ours", 1, 20), ("kit protocol", 0, 11), ("kit protocol", 2, 12)]
