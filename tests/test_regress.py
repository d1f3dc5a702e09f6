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

from evaluation.leaderboard.baseline import RegressionFileError, load_regression, updated_document
from evaluation.leaderboard.fingerprints import embeddings_fingerprint, result_fingerprint
from evaluation.leaderboard.gate import PairResult, SuiteRun, chance_score, gate
from evaluation.leaderboard.gate_table import render_gate
from evaluation.suite.shared_tasks import resolve_shared

REPO = Path(__file__).resolve().parents[1]
REGRESSION = REPO / "results" / "regression.json"

TINY_SUITE = """
name = "tiny"
pairs = [["mel", "keywords"], ["mel", "scenes"]]
determinism_pair = ["mel", "keywords"]
[probe]
protocol = "hear"
grid_points = 1
[seeds]
default = 1
"mel/scenes" = 3
[models.mel]
model = "mel"
[tasks.keywords]
folder = "speech_commands-v0.0.2-small"
prepare = { task = "speech_commands", mode = "small", source = "data/speech_commands_small" }
[tasks.scenes]
folder = "dcase2016_task2-hear2021-small"
prepare = { task = "dcase2016_task2", mode = "small", layout = ["make_dcase2016_layout.py"] }
"""


def write_regression(folder: Path, suite: str = TINY_SUITE, tolerance: dict | None = None) -> Path:
    """A suite file and a baseline file naming it (no recorded baseline yet)."""
    (folder / "tiny.toml").write_text(suite)
    path = folder / "regression.json"
    path.write_text(json.dumps({"schema": "hear-atst-regression/2", "suite": "tiny.toml",
                                "tolerance": tolerance or {"default": 0.02, "mel/scenes": 0.05}, "baseline": {}}))
    return path


def pair(key: str, score: float | None, metric: str = "top1_acc", higher: bool = True, fp: str = "r1",
         chance: float | None = None) -> PairResult:
    return PairResult(key, metric, higher, score, result_fingerprint=fp, embeddings_fingerprint="e1", seconds=1.0,
                      chance=chance)


@pytest.fixture()
def suite_and_run(tmp_path: Path):
    suite, empty, _ = load_regression(write_regression(tmp_path))
    run = SuiteRun(
        results={
            "mel/keywords": pair("mel/keywords", 0.50),
            "mel/scenes": pair("mel/scenes", 0.30, metric="event_onset_200ms_fms"),
        },
        repeat=pair("mel/keywords", 0.50),
        seconds=10.0,
    )
    baseline = replace(empty, recorded=updated_document(suite, empty, run)["baseline"])
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
    er_baseline = replace(baseline, recorded={
        **baseline.recorded,
        "mel/scenes": {**baseline.recorded["mel/scenes"], "metric": "segment_1s_er", "higher_is_better": False},
    })
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
        updated_document(suite, baseline, changed_embeddings)


def test_gate_fails_without_baseline_or_score(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    assert [row.status for row in gate(suite, replace(baseline, recorded={}), run)][:2] == ["NO BASELINE"] * 2
    no_score = SuiteRun({**run.results, "mel/keywords": pair("mel/keywords", None)}, pair("mel/keywords", None), 1)
    assert rows_by_key(gate(suite, baseline, no_score))["mel/keywords"].status == "NO SCORE"
    stale = replace(baseline, recorded={**baseline.recorded, "mel/old": {"metric": "top1_acc", "score": 0.1}})
    assert rows_by_key(gate(suite, stale, run))["mel/old"].status == "NOT RUN"
    nan_run = SuiteRun({**run.results, "mel/keywords": pair("mel/keywords", math.nan)}, run.repeat, 1)
    assert rows_by_key(gate(suite, baseline, nan_run))["mel/keywords"].status == "NO SCORE"  # NaN never passes
    for bad in (math.nan, None):  # a hand-edited baseline without a number
        edited = replace(baseline, recorded={**baseline.recorded,
                                             "mel/keywords": {**baseline.recorded["mel/keywords"], "score": bad}})
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
    suite_errors = {  # the suite file's problems, named with the baseline file that names it
        "pair crepe/keywords names an unknown model or task": ('["mel", "scenes"]]', '["mel", "scenes"], ["crepe", '
                                                                                      '"keywords"]]'),
        "determinism pair mel/keywords is not one of the suite's pairs": ('[["mel", "keywords"], ', "["),
        "exactly one of 'source' and 'layout'": ('source = "data/', 'layout = ["x.py"], source = "data/'),
        "seeds are counts": ('default = 1', 'default = 0'),
        "names no determinism_pair": ('determinism_pair = ["mel", "keywords"]', ""),
        "has no 'prepare'": ('prepare = { task = "speech_commands"', 'x = { task = "speech_commands"'),
        "[probe]: ProbeConfig.__init__() got an unexpected keyword argument 'points'": ("grid_points", "points"),
    }
    for message, (old, new) in suite_errors.items():
        assert old in TINY_SUITE, old
        write_regression(tmp_path, TINY_SUITE.replace(old, new))
        with pytest.raises(RegressionFileError, match=re.escape(message)):
            load_regression(path)
    for tolerance, message in (({"mel/scenes": 0.05}, "tolerance needs a 'default'"), (
            {"default": 0.02, "mel/nope": 0.1}, "tolerance for mel/nope: not a pair of suite tiny")):
        write_regression(tmp_path, tolerance=tolerance)
        with pytest.raises(RegressionFileError, match=re.escape(message)):
            load_regression(path)
    path.write_text(json.dumps({"schema": "hear-atst-regression/2", "suite": "nope", "tolerance": {"default": 0.1}}))
    with pytest.raises(RegressionFileError, match="unknown suite 'nope'"):
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
    row = rows_by_key(gate(suite, replace(baseline, tolerance={"default": 0.5}),
                           SuiteRun({**run.results, "mel/keywords": broken}, run.repeat, 1.0)))["mel/keywords"]
    assert row.status == "AT CHANCE" and row.failed and row.chance == 0.25
    # the table's change, tolerance and chance columns, then the status
    assert re.search(r"0\.2500\s*│\s*0\.5000\s*│\s*0\.2500\s*│\s*AT CHANCE", render_gate([row]))
    above = pair("mel/keywords", 0.26, fp="r2", chance=0.25)
    row = rows_by_key(gate(suite, replace(baseline, tolerance={"default": 0.5}),
                           SuiteRun({**run.results, "mel/keywords": above}, run.repeat, 1.0)))["mel/keywords"]
    assert row.status == "ok"


def test_update_refuses_a_pair_that_could_not_tell_a_broken_model(suite_and_run) -> None:
    suite, run, baseline = suite_and_run
    blind = {**run.results, "mel/keywords": pair("mel/keywords", 0.10, chance=1 / 12)}  # 0.10 - 0.02 <= 1/12
    with pytest.raises(RuntimeError, match=r"mel/keywords \(0.1000 - tolerance 0.0200 <= chance 0.0833\)"):
        updated_document(suite, baseline, SuiteRun(blind, run.repeat, 1.0))
    clear = {**run.results, "mel/keywords": pair("mel/keywords", 0.11, chance=1 / 12)}
    assert updated_document(suite, baseline, SuiteRun(clear, run.repeat, 1.0))["baseline"]["mel/keywords"][
        "chance"] == 1 / 12


def test_committed_tolerances_follow_the_rule_and_beat_chance() -> None:
    """Every tolerance is max(floor, two test items' worth, 3 sd of the difference of two means), rounded up; every
    recorded score minus its tolerance stays above a constant prediction's score."""
    suite, baseline, document = load_regression(REGRESSION)
    rule = document["tolerance_rule"]
    for model, task in suite.pairs:
        key = f"{model}/{task}"
        raw = max(rule["floor"], 2 / rule["test_items"][task], rule["three_sd_of_mean_difference"][key])
        expected = math.ceil(raw / rule["round_up_to"] - 1e-9) * rule["round_up_to"]
        assert baseline.tolerance_for(key) == pytest.approx(expected), key
        recorded = baseline.recorded[key]
        assert recorded["chance"] is not None, key
        assert recorded["score"] - baseline.tolerance_for(key) > recorded["chance"], key
    assert set(baseline.tolerance) - {"default"} <= {f"{model}/{task}" for model, task in suite.pairs}


def test_each_pair_averages_its_own_number_of_seeds(tmp_path: Path) -> None:
    suite = load_regression(write_regression(tmp_path))[0]
    assert suite.probe_for("mel/keywords").seeds == [0]
    scenes = suite.probe_for("mel/scenes")
    assert scenes.seeds == [0, 1, 2] and scenes.protocol == "hear" and scenes.grid_points == 1
    committed = load_regression(REGRESSION)[0]
    assert committed.name == "ci" and committed.path.endswith("ci.toml")  # the shipped suite the run reads too
    assert committed.probe_for("mel/esc10").seeds == list(range(10))
    assert committed.probe_for("mel/dcase2016").seeds == list(range(5))


def test_shared_folder_resolution(tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite, _, _ = load_regression(REGRESSION)
    monkeypatch.delenv("HEAR_ATST_SHARED", raising=False)
    assert resolve_shared(suite, REGRESSION) == (REPO.parent / "shared").resolve()  # ../shared beside the repository
    monkeypatch.setenv("HEAR_ATST_SHARED", str(shared_dir))
    assert resolve_shared(suite, REGRESSION) == shared_dir
    with pytest.raises(FileNotFoundError, match=r"not the shared reference folder .* that suite ci prepares"):
        resolve_shared(suite, REGRESSION, tmp_path)
    baseline = write_regression(tmp_path)  # outside any checkout: ../shared beside the file's own folder
    assert resolve_shared(suite, baseline, shared_dir) == shared_dir
    monkeypatch.delenv("HEAR_ATST_SHARED")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path.parent / "shared"))):
        resolve_shared(suite, baseline)
    monkeypatch.setenv("HEAR_ATST_SHARED", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="set \\$HEAR_ATST_SHARED"):
        resolve_shared(suite, REGRESSION)


# --- real runs ------------------------------------------------------------------------------------------------------


KEYWORD_SUITE = """
name = "keywords"
pairs = [["mel", "keywords"]]
determinism_pair = ["mel", "keywords"]
probe = { protocol = "hear", grid_points = 1, max_epochs = 30 }
seeds = { default = 2 }
[models.mel]
model = "mel"
[tasks.keywords]
folder = "speech_commands-v0.0.2-small"
prepare = { task = "speech_commands", mode = "small", source = "data/speech_commands_small" }
"""


def keyword_suite(folder: Path, tolerance: float = 0.0) -> Path:
    """The cheapest real suite: the log-mel baseline on the HEAR small Speech Commands archives. With no tolerance:
    the same machine reruns bit-identically, and a score near chance (1/12) must still pass --update."""
    return write_regression(folder, KEYWORD_SUITE, {"default": tolerance})


def test_regress_command_records_then_catches_a_drop(tmp_path: Path, shared_dir: Path) -> None:
    from typer.testing import CliRunner

    from hear_atst.cli import app

    path = keyword_suite(tmp_path)
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

    path = write_regression(tmp_path, TINY_SUITE.replace("data/speech_commands_small", "data/no_such_folder"))
    result = CliRunner().invoke(app, ["regress", "--baseline", str(path), "--shared", str(shared_dir)])
    assert result.exit_code == 2
    assert "error: the suite could not run:" in result.output and "no_such_folder" in result.output


def test_a_refused_update_still_shows_the_run(tmp_path: Path, shared_dir: Path) -> None:
    """--update with a tolerance that reaches chance: refused (exit 1, the old baseline kept), the table still shown."""
    from typer.testing import CliRunner

    from hear_atst.cli import app

    path = keyword_suite(tmp_path, tolerance=0.5)
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
