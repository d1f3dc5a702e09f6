"""The regression gate: its logic on synthetic results, the suite file, and real runs on real data."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from leaderboard_helpers import make_results

from evaluation.leaderboard.regress import (
    PairResult,
    RegressionFileError,
    SuiteRun,
    chance_score,
    embeddings_fingerprint,
    gate,
    load_regression,
    render_gate,
    resolve_shared,
    result_fingerprint,
    updated_document,
)

REPO = Path(__file__).resolve().parents[1]
REGRESSION = REPO / "results" / "regression.json"


def tiny_document(tolerance: float = 0.02) -> dict:
    return {
        "schema": "hear-atst-regression/1",
        "suite": {
            "shared": "../shared",
            "sample_rate": 16000,
            "tasks": {
                "keywords": {"task": "speech_commands", "mode": "small", "source": "data/speech_commands_small"},
                "scenes": {"task": "dcase2016_task2", "mode": "small", "layout": ["make_dcase2016_layout.py"]},
            },
            "models": {"mel": {"model": "mel"}},
            "pairs": [["mel", "keywords"], ["mel", "scenes"]],
            "probe": {"protocol": "hear", "grid_points": 1},
            "seeds": {"default": 1, "mel/scenes": 3},
            "tolerance": {"default": tolerance, "mel/scenes": 0.05},
            "determinism": {"pair": ["mel", "keywords"]},
        },
        "baseline": {},
    }


def pair(key: str, score: float | None, metric: str = "top1_acc", higher: bool = True, fp: str = "r1",
         chance: float | None = None) -> PairResult:
    return PairResult(key, metric, higher, score, result_fingerprint=fp, embeddings_fingerprint="e1", seconds=1.0,
                      chance=chance)


@pytest.fixture()
def suite_and_run(tmp_path: Path):
    path = tmp_path / "regression.json"
    path.write_text(json.dumps(tiny_document()))
    suite, _, document = load_regression(path)
    run = SuiteRun(
        results={
            "mel/keywords": pair("mel/keywords", 0.50),
            "mel/scenes": pair("mel/scenes", 0.30, metric="event_onset_200ms_fms"),
        },
        repeat=pair("mel/keywords", 0.50),
        seconds=10.0,
    )
    baseline = updated_document(document, suite, run)["baseline"]
    return suite, run, baseline


def rows_by_key(rows):
    return {row.key: row for row in rows}


def test_gate_passes_when_scores_hold(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    rows = gate(suite, baseline, run)
    assert [row.status for row in rows] == ["ok", "ok", "ok"]
    assert rows_by_key(rows)["mel/keywords"].detail == "results identical to baseline"
    assert render_gate(rows).endswith("passed: 3 checks\n")


def test_gate_fails_with_a_readable_table_on_a_lowered_score(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    lowered = SuiteRun({**run.results, "mel/keywords": pair("mel/keywords", 0.47, fp="r2")}, run.repeat, 1.0)
    rows = gate(suite, baseline, lowered)
    row = rows_by_key(rows)["mel/keywords"]
    assert row.status == "REGRESSED" and row.failed
    text = render_gate(rows)
    line = next(line for line in text.splitlines() if "mel/keywords" in line and "REGRESSED" in line)
    assert re.search(r"top1_acc\s*│\s*0\.5000\s*│\s*0\.4700\s*│\s*-0\.0300\s*│\s*0\.0200\s*│\s*–\s*│\s*REGRESSED", line)
    assert text.rstrip().endswith("FAILED: mel/keywords, mel/keywords (run twice)")  # the repeat no longer matches


def test_gate_tolerance_and_direction(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    # within tolerance: 0.015 and exactly 0.02 below pass (0.50 - 0.48 is 0.02 only up to float rounding), and a
    # per-pair tolerance applies (0.04 below, against 0.05)
    for score in (0.485, 0.48):
        within = SuiteRun(
            {"mel/keywords": pair("mel/keywords", score),
             "mel/scenes": pair("mel/scenes", 0.26, "event_onset_200ms_fms")},
            pair("mel/keywords", score),
            1.0,
        )
        assert [row.status for row in gate(suite, baseline, within)] == ["ok", "ok", "ok"]
    better = SuiteRun(
        {**run.results, "mel/keywords": pair("mel/keywords", 0.6, fp="r9")}, pair("mel/keywords", 0.6, fp="r9"), 1
    )
    row = rows_by_key(gate(suite, baseline, better))["mel/keywords"]
    assert row.status == "improved" and not row.failed and row.detail == "results differ from baseline"
    # an error rate (lower is better) that rises beyond the tolerance regresses
    er_baseline = {
        **baseline,
        "mel/scenes": {**baseline["mel/scenes"], "metric": "segment_1s_er", "higher_is_better": False},
    }
    worse = SuiteRun(
        {**run.results, "mel/scenes": pair("mel/scenes", 0.36, "segment_1s_er", higher=False)}, run.repeat, 1
    )
    assert rows_by_key(gate(suite, er_baseline, worse))["mel/scenes"].status == "REGRESSED"
    lower = SuiteRun(
        {**run.results, "mel/scenes": pair("mel/scenes", 0.2, "segment_1s_er", higher=False)}, run.repeat, 1
    )
    assert rows_by_key(gate(suite, er_baseline, lower))["mel/scenes"].status == "improved"


def test_gate_fails_when_determinism_breaks(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    changed_embeddings = SuiteRun(run.results, replace(run.repeat, embeddings_fingerprint="e2"), 1.0)
    rows = gate(suite, baseline, changed_embeddings)
    row = rows_by_key(rows)["mel/keywords (run twice)"]
    assert row.status == "NONDETERMINISTIC" and row.detail == "embeddings differ"
    assert "FAILED: mel/keywords (run twice)" in render_gate(rows)
    changed_results = SuiteRun(run.results, replace(run.repeat, result_fingerprint="r3", score=0.5), 1.0)
    assert rows_by_key(gate(suite, baseline, changed_results))["mel/keywords (run twice)"].detail.startswith(
        "results differ"
    )
    with pytest.raises(RuntimeError, match="nondeterministic"):
        updated_document({}, suite, changed_embeddings)


def test_gate_fails_without_baseline_or_score(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    assert [row.status for row in gate(suite, {}, run)][:2] == ["NO BASELINE", "NO BASELINE"]
    no_score = SuiteRun({**run.results, "mel/keywords": pair("mel/keywords", None)}, pair("mel/keywords", None), 1)
    assert rows_by_key(gate(suite, baseline, no_score))["mel/keywords"].status == "NO SCORE"
    stale = {**baseline, "mel/old": {"metric": "top1_acc", "score": 0.1}}
    assert rows_by_key(gate(suite, stale, run))["mel/old"].status == "NOT RUN"
    nan_run = SuiteRun({**run.results, "mel/keywords": pair("mel/keywords", math.nan)}, run.repeat, 1)
    assert rows_by_key(gate(suite, baseline, nan_run))["mel/keywords"].status == "NO SCORE"  # NaN never passes
    for bad in (math.nan, None):  # a hand-edited baseline without a number
        edited = {**baseline, "mel/keywords": {**baseline["mel/keywords"], "score": bad}}
        assert rows_by_key(gate(suite, edited, run))["mel/keywords"].status == "NO BASELINE"


def test_fingerprints(tmp_path: Path) -> None:
    a = make_results("mel", "esc50", "esc50-v2.0.0-small", {"fold00": 0.5, "fold01": 0.6, "fold02": 0.7})
    b = make_results("mel", "esc50", "esc50-v2.0.0-small", {"fold00": 0.5, "fold01": 0.6, "fold02": 0.7})
    b["date"] = "2030-01-01T00:00:00+00:00"  # the run date and timings are not part of the fingerprint
    b["timing_s"]["total"] = 99.0
    assert result_fingerprint(a) == result_fingerprint(b)
    b["runs"][0]["folds"]["fold01"]["scores"]["top1_acc"] = 0.6000000000000001  # one ulp
    assert result_fingerprint(a) != result_fingerprint(b)
    (tmp_path / "train.embeddings.npy").write_bytes(b"\x00" * 64)
    (tmp_path / "test.embeddings.npy").write_bytes(b"\x01" * 64)
    first = embeddings_fingerprint(tmp_path)
    (tmp_path / "test.embeddings.npy").write_bytes(b"\x01" * 63 + b"\x02")
    assert embeddings_fingerprint(tmp_path) != first
    with pytest.raises(FileNotFoundError, match=r"no \*\.embeddings\.npy"):
        embeddings_fingerprint(tmp_path / "missing")


def test_regression_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "regression.json"
    path.write_text("{")
    with pytest.raises(RegressionFileError, match=r"regression\.json: not a readable regression file"):
        load_regression(path)
    document = tiny_document()
    document["suite"]["pairs"].append(["crepe", "keywords"])
    path.write_text(json.dumps(document))
    with pytest.raises(RegressionFileError, match="pair crepe/keywords names an unknown model or task"):
        load_regression(path)
    document = tiny_document()
    document["suite"]["pairs"].pop(0)
    path.write_text(json.dumps(document))
    with pytest.raises(RegressionFileError, match="determinism pair mel/keywords is not one of the suite's pairs"):
        load_regression(path)
    document = tiny_document()
    document["suite"]["tasks"]["keywords"]["layout"] = ["make_esc50_layout.py"]
    path.write_text(json.dumps(document))
    with pytest.raises(RegressionFileError, match="exactly one of 'source' and 'layout'"):
        load_regression(path)
    for probe, seeds in (({"protocol": "hear", "seeds": [0]}, {"default": 1}), ({}, {"default": 0}), ({}, {"x": 1})):
        document = tiny_document()
        document["suite"]["probe"], document["suite"]["seeds"] = probe, seeds
        path.write_text(json.dumps(document))
        with pytest.raises(RegressionFileError, match="seeds"):
            load_regression(path)


def test_chance_is_the_best_constant_prediction() -> None:
    split = {"test": {"a.wav": ["x"], "b.wav": ["y"], "c.wav": ["y"], "d.wav": ["z"]}}
    holdout = SimpleNamespace(metadata={"split_mode": "trainvaltest"}, labels=split)
    assert chance_score(holdout, "top1_acc") == 0.5
    folds = {f"fold0{i}": {f"{i}{n}.wav": [label] for n, label in enumerate(labels)}
             for i, labels in enumerate(["aab", "abc", "aaaa"])}
    kfold = SimpleNamespace(metadata={"split_mode": "new_split_kfold", "splits": list(folds)}, labels=folds)
    assert chance_score(kfold, "top1_acc") == pytest.approx((2 / 3 + 1 / 3 + 1) / 3)  # mean over the test folds
    assert chance_score(kfold, "event_onset_200ms_fms") == 0.0
    assert chance_score(kfold, "mAP") is None


def test_a_score_at_chance_fails_whatever_the_tolerance(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    broken = pair("mel/keywords", 0.25, fp="r2", chance=0.25)  # what constant embeddings give
    row = rows_by_key(gate(replace(suite, tolerance={"default": 0.5}), baseline,
                           SuiteRun({**run.results, "mel/keywords": broken}, run.repeat, 1.0)))["mel/keywords"]
    assert row.status == "AT CHANCE" and row.failed and row.chance == 0.25
    # the table's change, tolerance and chance columns, then the status
    assert re.search(r"0\.2500\s*│\s*0\.5000\s*│\s*0\.2500\s*│\s*AT CHANCE", render_gate([row]))
    above = pair("mel/keywords", 0.26, fp="r2", chance=0.25)
    row = rows_by_key(gate(replace(suite, tolerance={"default": 0.5}), baseline,
                           SuiteRun({**run.results, "mel/keywords": above}, run.repeat, 1.0)))["mel/keywords"]
    assert row.status == "ok"


def test_update_refuses_a_pair_that_could_not_tell_a_broken_model(suite_and_run, tmp_path: Path) -> None:
    suite, run, _ = suite_and_run
    document = tiny_document()
    blind = {**run.results, "mel/keywords": pair("mel/keywords", 0.10, chance=1 / 12)}  # 0.10 - 0.02 <= 1/12
    with pytest.raises(RuntimeError, match=r"mel/keywords \(0.1000 - tolerance 0.0200 <= chance 0.0833\)"):
        updated_document(document, suite, SuiteRun(blind, run.repeat, 1.0))
    clear = {**run.results, "mel/keywords": pair("mel/keywords", 0.11, chance=1 / 12)}
    assert updated_document(document, suite, SuiteRun(clear, run.repeat, 1.0))["baseline"]["mel/keywords"][
        "chance"] == 1 / 12


def test_committed_tolerances_follow_the_rule_and_beat_chance() -> None:
    """Every tolerance is max(floor, two test items' worth, 3 sd of the difference of two means), rounded up; every
    recorded score minus its tolerance stays above a constant prediction's score."""
    suite, baseline, document = load_regression(REGRESSION)
    rule = document["suite"]["tolerance_rule"]
    for model, task in suite.pairs:
        key = f"{model}/{task}"
        raw = max(rule["floor"], 2 / rule["test_items"][task], rule["three_sd_of_mean_difference"][key])
        expected = math.ceil(raw / rule["round_up_to"] - 1e-9) * rule["round_up_to"]
        assert suite.tolerance_for(key) == pytest.approx(expected), key
        recorded = baseline[key]
        assert recorded["chance"] is not None, key
        assert recorded["score"] - suite.tolerance_for(key) > recorded["chance"], key


def test_each_pair_averages_its_own_number_of_seeds(tmp_path: Path) -> None:
    path = tmp_path / "regression.json"
    path.write_text(json.dumps(tiny_document()))
    suite = load_regression(path)[0]
    assert suite.probe_for("mel/keywords").seeds == [0]
    scenes = suite.probe_for("mel/scenes")
    assert scenes.seeds == [0, 1, 2] and scenes.protocol == "hear" and scenes.grid_points == 1
    committed = load_regression(REGRESSION)[0]
    assert committed.probe_for("mel/esc10").seeds == list(range(10))
    assert committed.probe_for("mel/dcase2016").seeds == list(range(5))


def test_shared_folder_resolution(tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite, _, _ = load_regression(REGRESSION)
    monkeypatch.delenv("HEAR_ATST_SHARED", raising=False)
    assert resolve_shared(suite, REGRESSION) == (REPO.parent / "shared").resolve()  # ../shared beside the repository
    monkeypatch.setenv("HEAR_ATST_SHARED", str(shared_dir))
    assert resolve_shared(suite, REGRESSION) == shared_dir
    with pytest.raises(FileNotFoundError, match="not the shared reference folder"):
        resolve_shared(suite, REGRESSION, tmp_path)
    monkeypatch.setenv("HEAR_ATST_SHARED", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="set \\$HEAR_ATST_SHARED"):
        resolve_shared(suite, REGRESSION)


# --- real runs ------------------------------------------------------------------------------------------------------


def keyword_suite(path: Path) -> None:
    """The cheapest real suite: the log-mel baseline on the HEAR small Speech Commands archives."""
    document = tiny_document()
    document["suite"]["tasks"].pop("scenes")
    document["suite"]["pairs"] = [["mel", "keywords"]]
    document["suite"]["probe"] = {"protocol": "hear", "grid_points": 1, "max_epochs": 30}
    document["suite"]["seeds"] = {"default": 2}
    # no tolerance: the same machine reruns bit-identically, and a score near chance (1/12) must still pass --update
    document["suite"]["tolerance"] = {"default": 0.0}
    path.write_text(json.dumps(document))


def test_regress_command_records_then_catches_a_drop(tmp_path: Path, shared_dir: Path) -> None:
    from typer.testing import CliRunner

    from hear_atst.cli import app

    path = tmp_path / "regression.json"
    keyword_suite(path)
    runner = CliRunner()
    base = ["regress", "--baseline", str(path), "--shared", str(shared_dir)]
    recorded = runner.invoke(app, [*base, "--update"])
    assert recorded.exit_code == 0, recorded.output
    assert "prepared keywords: speech_commands-v0.0.2-small" in recorded.output
    assert "identical embeddings and results in two fresh runs" in recorded.output
    baseline = json.loads(path.read_text())["baseline"]["mel/keywords"]
    assert baseline["metric"] == "top1_acc" and 0.0 < baseline["score"] < 1.0
    assert baseline["chance"] == 1 / 12  # the test archive holds 8 clips of each of the 12 classes
    assert len(baseline["result_fingerprint"]) == len(baseline["embeddings_fingerprint"]) == 64

    # pretend the recorded score was 0.1 higher: the re-run now falls short by 0.1 > 0
    document = json.loads(path.read_text())
    document["baseline"]["mel/keywords"]["score"] += 0.1
    path.write_text(json.dumps(document))
    failed = runner.invoke(app, base)
    assert failed.exit_code == 1
    line = next(line for line in failed.output.splitlines() if "REGRESSED" in line)
    assert "mel/keywords" in line and "-0.1000" in line and "results identical to baseline" in line
    assert "FAILED: mel/keywords" in failed.output


@pytest.mark.slow
def test_ci_suite_passes_against_the_committed_baseline(shared_dir: Path) -> None:
    """What `.ci/run` does: the whole suite of results/regression.json against its recorded baseline."""
    from typer.testing import CliRunner

    from hear_atst.cli import app

    result = CliRunner().invoke(app, ["regress", "--baseline", str(REGRESSION), "--shared", str(shared_dir)])
    assert result.exit_code == 0, result.output
    assert "passed:" in result.output


def test_regress_command_names_a_missing_source(tmp_path: Path, shared_dir: Path) -> None:
    from typer.testing import CliRunner

    from hear_atst.cli import app

    path = tmp_path / "regression.json"
    document = tiny_document()
    document["suite"]["tasks"]["keywords"]["source"] = "data/no_such_folder"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["regress", "--baseline", str(path), "--shared", str(shared_dir)])
    assert result.exit_code == 2
    assert "error: the suite could not run:" in result.output and "no_such_folder" in result.output


def test_a_refused_update_still_shows_the_run(tmp_path: Path, shared_dir: Path) -> None:
    """--update with a tolerance that reaches chance: refused (exit 1, the old baseline kept), the table still shown."""
    from typer.testing import CliRunner

    from hear_atst.cli import app

    path = tmp_path / "regression.json"
    keyword_suite(path)
    document = json.loads(path.read_text())
    document["suite"]["tolerance"] = {"default": 0.5}
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["regress", "--baseline", str(path), "--shared", str(shared_dir), "--update"])
    assert result.exit_code == 1
    assert "Regression gate" in result.output and "NO BASELINE" in result.output  # the run's row, shown
    assert "baseline not updated: not recording a baseline whose tolerance reaches" in " ".join(result.output.split())
    assert json.loads(path.read_text())["baseline"] == {}


def test_regress_input_errors_are_one_line_usage_errors(tmp_path: Path, shared_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hear_atst.cli import app

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    (tmp_path / "other.json").write_text('{"schema": "something-else"}')
    base = ["regress", "--shared", str(shared_dir)]
    cases = {
        "not a readable regression file": ["--baseline", str(tmp_path / "nope.json")],
        "schema 'something-else'": ["--baseline", str(tmp_path / "other.json")],
        "not the shared reference folder": ["--shared", str(tmp_path)],
        "not empty (the gate needs a fresh run)": ["--work-dir", str(tmp_path / "full")],
        "not a folder": ["--work-dir", str(tmp_path / "other.json")],
    }
    for message, arguments in cases.items():
        result = CliRunner().invoke(app, [*base, *arguments])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    monkeypatch.chdir(tmp_path)  # the default baseline is the checkout's, wherever the command runs
    result = CliRunner().invoke(app, [*base, "--work-dir", str(tmp_path / "full")])
    assert result.exit_code == 2 and "not empty" in result.output, result.output
