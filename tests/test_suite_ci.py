"""The ``ci`` suite: one definition (``evaluation/suite/suites/ci.toml``) read by ``hear-atst regress`` and by
``hear-atst run --suite ci``, which prepares its tasks from ``../shared`` as the gate does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from suite_helpers import run_cli

from evaluation.leaderboard.baseline import load_regression
from evaluation.suite.suites import load_suite, pair_key
from tasks.registry import get_spec

REGRESSION = Path(__file__).resolve().parents[1] / "results" / "regression.json"
CREPE_PROBE = "hear-points=1-max-epochs=40"  # the suite's probe settings as a run name


def ci_args(work: Path, tasks_dir: Path, shared: Path, *extra: str) -> list[str]:
    return ["run", "--suite", "ci", "--tasks-dir", str(tasks_dir), "--shared", str(shared), "--embeddings-dir",
            str(work / "embeddings"), "--results-dir", str(work / "results"), "--run-dir", str(work / "run"), *extra]


def test_the_ci_suite_is_what_the_baseline_records() -> None:
    suite = load_suite("ci")
    regression_suite, baseline, _ = load_regression(REGRESSION)
    assert regression_suite == suite  # regress reads the shipped file, not a copy
    assert {pair_key(*pair) for pair in suite.pairs} == set(baseline.recorded)
    assert len(suite.pairs) == 9 and suite.determinism_pair == ("mel", "keywords")
    for task in suite.tasks.values():  # each folder name is the one `prepare` gives
        assert get_spec(task.prepare.task).folder_name(task.prepare.mode) == task.folder, task.key
    assert suite.models["atst_frame"].weights == "fixtures/atst_frame_lightning.ckpt"
    probe = suite.probe_for("crepe/speakers")
    assert probe.run_name == CREPE_PROBE and probe.seeds == list(range(10)) and not probe.psds
    assert suite.probe_for("atst_frame/dcase2016").seeds == list(range(5))


def test_run_suite_ci_plans_the_gates_pairs_on_prepared_tasks(voxceleb1_task: Path, shared_dir: Path,
                                                             tmp_path: Path) -> None:
    """``--models crepe``: the suite's one crepe pair; its task folder, complete already, is kept as it is."""
    result = run_cli(*ci_args(tmp_path, voxceleb1_task.parent, shared_dir, "--models", "crepe", "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "prepared speakers: voxceleb1-v1.1-hear-atst-small (complete already)" in result.output
    plan = result.output[result.output.index("3 jobs"):].splitlines()
    assert plan[0] == "3 jobs: 1 model(s) × 1 task(s) × 1 probe(s)"
    folder = voxceleb1_task.name
    assert plan[3].startswith(f"  probe/crepe/{folder}/{CREPE_PROBE}: to run;") and "10 seed(s)" in plan[3]
    assert plan[3].endswith(str(tmp_path / "results" / "crepe" / folder / f"{CREPE_PROBE}-seeds=0-9-no-psds"))


def test_run_suite_ci_problems_are_usage_errors(tmp_path: Path, shared_dir: Path) -> None:
    cases = {
        "not the shared reference folder (needs data/ and tools/) that suite ci prepares its tasks from":
            ("--shared", str(tmp_path)),
        "suite ci names its models' weights, probes and seeds: --seeds, --max-epochs do not apply to it":
            ("--seeds", "2", "--max-epochs", "3"),
        "--models nope: not a model of suite ci (mel, crepe, atst_frame)": ("--models", "nope"),
    }
    for message, extra in cases.items():
        result = run_cli(*ci_args(tmp_path, tmp_path / "tasks", shared_dir, "--models", "crepe", *extra))
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "tasks").exists()


@pytest.mark.slow
def test_run_suite_ci_scores_as_the_gate_recorded(tmp_path: Path, shared_dir: Path) -> None:
    """mel's four pairs of the suite, run by ``run`` from scratch: every score within its tolerance of the baseline
    ``regress`` recorded (on the same machine, the results are bit-identical)."""
    result = run_cli(*ci_args(tmp_path, tmp_path / "tasks", shared_dir, "--models", "mel"))
    assert result.exit_code == 0, result.output
    suite, baseline, _ = load_regression(REGRESSION)
    by_folder = {task.folder: key for key, task in suite.tasks.items()}
    scores = {}
    for path in (tmp_path / "results" / "mel").glob("*/*/results.json"):
        scores[pair_key("mel", by_folder[path.parent.parent.name])] = json.loads(path.read_text())["score"]["mean"]
    assert sorted(scores) == sorted(pair_key(*pair) for pair in suite.pairs if pair[0] == "mel")
    for key, score in scores.items():
        assert abs(score - baseline.recorded[key]["score"]) <= baseline.tolerance_for(key) + 1e-9, key
