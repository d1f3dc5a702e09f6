"""The bf16-vs-fp32 score benchmark's per-seed arithmetic (its whole run is a benchmark, not a test)."""

from __future__ import annotations

import math

import pytest


def test_seed_scores_average_each_seeds_folds_leaving_nan_folds_out():
    from bench_bf16_scores import seed_scores

    results = {"primary_score": "top1_acc", "runs": [
        {"seed": 0, "folds": {"fold00": {"scores": {"top1_acc": 0.5}}, "fold01": {"scores": {"top1_acc": 0.7}}}},
        {"seed": 1, "folds": {"fold00": {"scores": {"top1_acc": None}}, "fold01": {"scores": {"top1_acc": 0.4}}}},
        {"seed": 2, "folds": {"fold00": {"scores": {"top1_acc": None}}, "fold01": {"scores": {"top1_acc": None}}}},
    ]}
    scores = seed_scores(results)
    assert scores[:2] == pytest.approx([0.6, 0.4]) and math.isnan(scores[2])


def test_paired_difference_is_signed_for_the_metric_and_skips_nan_seeds():
    from bench_bf16_scores import paired_difference

    fp32, bf16 = [0.50, 0.60, math.nan, 0.40], [0.52, 0.59, 0.30, 0.43]
    higher = paired_difference(fp32, bf16, higher_is_better=True)
    assert higher["per_seed"][:2] == pytest.approx([0.02, -0.01]) and math.isnan(higher["per_seed"][2])
    assert higher["difference"] == pytest.approx((0.02 - 0.01 + 0.03) / 3)
    assert higher["standard_error"] == pytest.approx(0.02081666 / math.sqrt(3), rel=1e-5)
    lower = paired_difference(fp32, bf16, higher_is_better=False)  # an error rate: bf16 higher = bf16 worse
    assert lower["difference"] == pytest.approx(-higher["difference"])
    single = paired_difference([0.5], [0.6], higher_is_better=True)
    assert single["difference"] == pytest.approx(0.1) and single["standard_error"] is None
    none = paired_difference([math.nan], [0.6], higher_is_better=True)
    assert none["difference"] is None and none["standard_error"] is None
