"""Leaderboard: published tables, aggregation of results.json files, protocol separation, CSV / Markdown / HTML."""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import pandas as pd
import pytest
from leaderboard_helpers import make_results, write_results

from evaluation.leaderboard.aggregate import collect_runs, published_for_runs, task_key
from evaluation.leaderboard.html import (
    event_timeline_figure,
    figure_png,
    task_bars_figure,
)
from evaluation.leaderboard.published import (
    HEAR_COLUMNS,
    PUBLISHED_COLUMNS,
    convert_hear_leaderboard,
    load_published,
    read_published_table,
)
from evaluation.leaderboard.report import Timeline, file_timeline, run_timelines, write_leaderboard
from evaluation.leaderboard.suite import normalised_scores, suite_rows, suite_scores
from evaluation.results import EVENTS_FILENAME, FoldEvents, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "evaluation" / "leaderboard" / "published_tables"


# --- published tables -------------------------------------------------------------------------------------------


def test_hear_table_is_the_official_csv_cell_by_cell(shared_dir: Path) -> None:
    source = shared_dir / "docs" / "hear_leaderboard.csv"
    with source.open(newline="") as handle:
        wide = list(csv.DictReader(handle))
    committed = read_published_table(PUBLISHED / "hear_leaderboard.csv")
    assert len(wide) == 34 and committed["model"].nunique() == 34  # every model row of the official file
    expected = {
        (row["Model"], HEAR_COLUMNS[column][0]): float(value)
        for row in wide
        for column, value in row.items()
        if column in HEAR_COLUMNS and value != ""
    }
    got = {(m, t): v for m, t, v in zip(committed["model"], committed["task"], committed["value"], strict=True)}
    assert len(committed) == len(expected) == 616
    assert got == expected
    assert set(committed["protocol"]) == {"hear"}
    # the committed file is exactly what the converter writes
    assert convert_hear_leaderboard(source).equals(committed)
    assert committed.loc[committed["task"] == "beehive_states", "note"].str.contains("UNVERIFIED").all()
    row = committed[(committed["model"] == "CP-JKU PaSST 2lvl+mel") & (committed["task"] == "dcase2016_task2")]
    assert row["value"].item() == 0.925373137 and row["metric"].item() == "event_onset_200ms_fms"


def test_published_tables_have_source_protocol_and_caveats() -> None:
    table = load_published(PUBLISHED)
    assert tuple(table.columns[:7]) == PUBLISHED_COLUMNS
    assert table["value"].between(0, 1).all()
    assert set(table["protocol"]) == {"hear", "evar-linear", "paper-linear", "paper-finetune", "paper-sed-finetune"}
    evar = table[table["table"] == "evar_linear"]
    assert len(evar) == 9 * 10  # 9 models x (9 tasks + average)
    atst_frame = evar[(evar["model"] == "ATST-Frame") & (evar["task"] == "esc50")]
    assert atst_frame["value"].item() == pytest.approx(0.909) and "90.9±0.6 %" in atst_frame["note"].item()
    assert evar[(evar["model"] == "ATST-Clip") & (evar["task"] == "voxceleb1")]["value"].item() == pytest.approx(0.72)
    papers = table[table["table"] == "papers"]
    asit = papers[papers["model"] == "ASiT"]
    # every ASiT paper number the spec flags stays flagged (the PretrainedSED PSDS numbers are not flagged there)
    assert asit[asit["protocol"] == "paper-finetune"]["note"].str.contains("UNVERIFIED").all()
    assert papers[papers["model"].str.startswith("ATST-Frame/ATST-C2F")]["note"].str.contains("UNVERIFIED").all()


def test_published_table_errors_name_the_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model,task,metric,value,protocol,source,note\nX,esc50,top1_acc,94.1,hear,somewhere,\n")
    with pytest.raises(ValueError, match=r"bad\.csv: row 2: value 94\.1 is not on the 0-1 scale"):
        read_published_table(bad)
    bad.write_text("model,task,metric,value,protocol,source,note\nX,esc50,top1_acc,0.9,,somewhere,\n")
    with pytest.raises(ValueError, match=r"bad\.csv: row 2: empty protocol"):
        read_published_table(bad)


# --- aggregation ------------------------------------------------------------------------------------------------


def test_task_key_from_hear_folder_names() -> None:
    assert task_key("esc50", "esc50-v2.0.0-full") == "esc50"
    assert task_key("esc50", "esc50-v2.0.0-small") == "esc50-small"
    assert task_key("speech_commands", "speech_commands-v0.0.2-5h") == "speech_commands-5h"
    assert task_key("speech_commands", "speech_commands-v0.0.2-full") == "speech_commands-full"
    assert task_key("dcase2016_task2", "dcase2016_task2-hear2021-full") == "dcase2016_task2"
    assert task_key("nsynth_pitch", "nsynth_pitch-v2.2.3-50h") == "nsynth_pitch-50h"
    # another clip count than HEAR's release (ESC-10 in the ESC-50 layout): its own task, never ranked with ESC-50
    assert task_key("esc50", "esc50-v2.0.0-full", 400) == "esc50-400clips"
    assert task_key("esc50", "esc50-v2.0.0-full", 2000) == task_key("esc50", "esc50-v2.0.0-full") == "esc50"
    assert task_key("esc50", "esc50-v2.0.0-small", 400) == "esc50-small"  # no official count for a small run
    assert task_key("dcase2016_task2", "dcase2016_task2-hear2021-full", 72) == "dcase2016_task2"


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    folds = {"fold00": 0.70, "fold01": 0.74, "fold02": 0.72, "fold03": 0.71, "fold04": 0.73}
    # an older and a newer run of the same (model, task, protocol): only the newer one is kept
    write_results(
        root,
        make_results(
            "mel",
            "esc50",
            "esc50-v2.0.0-full",
            {k: v - 0.2 for k, v in folds.items()},
            date="2026-11-20T09:00:00+00:00",
        ),
        run="old",
    )
    write_results(
        root,
        make_results(
            "mel",
            "esc50",
            "esc50-v2.0.0-full",
            {k: v - 0.1 for k, v in folds.items()},
            date="2026-11-21T09:00:00+00:00",
        ),
        run="new",
    )
    write_results(
        root, make_results("atst_frame-blocks=1", "esc50", "esc50-v2.0.0-full", folds, weights_sha256="ab" * 32)
    )
    write_results(
        root,
        make_results(
            "atst_frame-blocks=1",
            "esc50",
            "esc50-v2.0.0-full",
            {k: v + 0.1 for k, v in folds.items()},
            protocol="linear",
        ),
        run="linear",
    )
    write_results(
        root,
        make_results(
            "mel", "dcase2016_task2", "dcase2016_task2-hear2021-full", {"test": 0.31}, metric="event_onset_200ms_fms"
        ),
    )
    return root


def test_collect_runs_keeps_the_latest_run_and_reads_every_field(results_dir: Path) -> None:
    runs = collect_runs(results_dir)
    assert len(runs) == 4
    mel = runs[(runs["model"] == "mel") & (runs["task"] == "esc50")]
    assert mel["mean"].item() == pytest.approx(0.62) and "new" in mel["path"].item()
    assert mel["std"].item() == pytest.approx(pd.Series([0.60, 0.64, 0.62, 0.61, 0.63]).std())
    assert mel["n"].item() == 5
    every = collect_runs(results_dir, latest_only=False)
    assert len(every) == 5
    hear_esc = runs[(runs["task"] == "esc50") & (runs["protocol"] == "hear")]
    assert list(hear_esc["model"]) == ["atst_frame-blocks=1", "mel"]  # best first
    assert runs.loc[runs["model"] == "atst_frame-blocks=1", "weights_sha256"].iloc[0] == "ab" * 32


def test_collect_runs_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no results\.json found"):
        collect_runs(tmp_path)
    broken = tmp_path / "m" / "t" / "results.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"schema": "something-else"}')
    with pytest.raises(ValueError, match=r"results\.json: schema 'something-else'"):
        collect_runs(tmp_path)


def test_protocols_are_never_mixed(results_dir: Path) -> None:
    runs = collect_runs(results_dir)
    labelled = published_for_runs(runs, load_published(PUBLISHED))
    esc = labelled[labelled["task"] == "esc50"]
    comparable = esc[esc["comparison"] == "comparable"]
    # the HEAR leaderboard rows are comparable with the hear-protocol runs ...
    assert set(comparable["protocol"]) == {"hear"} and len(comparable) == 34 + 0  # every model has an ESC-50 score
    # ... EVAR and paper rows never are, not even with this project's linear protocol
    context = esc[esc["comparison"] == "context"]
    assert {"evar-linear", "paper-linear", "paper-finetune"} <= set(context["protocol"])
    assert "linear" not in set(esc["protocol"])
    # tasks without runs bring no published rows
    assert set(labelled["task"]) == {"esc50", "dcase2016_task2"}


def test_runs_with_other_probe_settings_are_their_own_protocol(tmp_path: Path) -> None:
    """An epoch-capped (or reduced-grid, bf16, ...) run neither hides the default run of its model and task nor is
    ranked with the HEAR leaderboard; files without the recorded run name get it rebuilt from their settings."""
    folds = {f"fold0{k}": 0.7 for k in range(5)}
    write_results(tmp_path, make_results("mel", "esc50", "esc50-v2.0.0-full", folds))
    capped = make_results("mel", "esc50", "esc50-v2.0.0-full", {k: 0.3 for k in folds},
                          date="2026-11-23T10:00:00+00:00")
    capped["protocol"]["run"] = "hear-max-epochs=40"
    write_results(tmp_path, capped, run="capped")
    legacy = make_results("mel", "esc50", "esc50-v2.0.0-full", {k: 0.5 for k in folds})  # no protocol.run yet:
    write_results(tmp_path, legacy, run="legacy", probe="hear-grid=fast-max-epochs=10")  # its folder names it
    oldest = make_results("mel", "esc50", "esc50-v2.0.0-full", {k: 0.4 for k in folds}, protocol="linear")
    write_results(tmp_path, oldest, run="oldest", probe="")  # results.json directly in the task folder
    runs = collect_runs(tmp_path)
    assert dict(zip(runs["protocol"], runs["mean"], strict=True)) == pytest.approx(
        {"hear": 0.7, "hear-max-epochs=40": 0.3, "hear-grid=fast-max-epochs=10": 0.5, "linear": 0.4})
    labelled = published_for_runs(runs, load_published(PUBLISHED))
    assert set(labelled.loc[labelled["comparison"] == "comparable", "protocol"]) == {"hear"}


# --- written files ----------------------------------------------------------------------------------------------


def test_leaderboard_csv_and_markdown(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "board"
    files = write_leaderboard(results_dir, PUBLISHED, out)
    table = pd.read_csv(files.csv, keep_default_na=False)
    runs = table[table["row"] == "run"]
    assert len(runs) == 4 and set(runs["comparison"]) == {"run"}
    atst = runs[(runs["model"] == "atst_frame-blocks=1") & (runs["protocol"] == "hear")]
    assert float(atst["value"].item()) == pytest.approx(0.72) and atst["weights_sha256"].item() == "ab" * 32
    assert atst["date"].item() == "2026-11-22T10:00:00+00:00"
    published = table[table["row"] == "published"]
    assert set(published["comparison"]) == {"comparable", "context"}
    assert (published["source"] != "").all()

    md = files.markdown.read_text()
    assert "## Protocol `hear`" in md and "## Protocol `linear`" in md
    # the pivot: model x task, mean ± sample std
    assert "| atst_frame-blocks=1 | – | 0.7200 ± 0.0158 |" in md
    assert "| mel | 0.3100 | 0.6200 ± 0.0158 |" in md
    # ranked with the comparable HEAR rows: PaSST (0.9475) above our 0.72, CREPE (0.3005) below
    comparable = md.split("### Comparable: protocol `hear`, metric `top1_acc`")[1].split("###")[0]
    order = [line.split(" | ")[1] for line in comparable.splitlines() if line.startswith("| ") and "rank" not in line]
    assert (
        order.index("CP-JKU PaSST base")
        < order.index("atst_frame-blocks=1")
        < order.index("mel")
        < order.index("CREPE")
    )
    assert "EVAR" not in comparable
    context = md.split("### Context: other protocols or metrics (not comparable)")[1].split("## ")[0]
    assert "| ATST-Frame | evar-linear | top1_acc | 0.9090 |" in context


def test_normalisation_is_the_hear_site_z_score_clamped() -> None:
    table = pd.DataFrame(
        {
            "label": ["a", "b", "c", "a", "b", "a"],
            "task": ["t1", "t1", "t1", "er", "er", "one"],
            "value": [0.2, 0.5, 0.8, 0.1, 0.3, 0.4],
            "higher_is_better": [True, True, True, False, False, True],
        }
    )
    z = normalised_scores(table)
    assert z.loc["a", "t1"] == pytest.approx(-1.0) and z.loc["b", "t1"] == 0.0 and z.loc["c", "t1"] == 1.0
    # (0.2 - 0.5) / 0.2449 = -1.22 -> clamped; lower error rate is better: a (0.1) scores +1
    assert z.loc["a", "er"] == pytest.approx(1.0) and z.loc["b", "er"] == pytest.approx(-1.0)
    assert z.loc["a", "one"] == 0.0 and pd.isna(z.loc["b", "one"])
    wide = pd.DataFrame({"label": list("abcd"), "task": "t", "value": [0.1, 0.2, 0.3, 0.4], "higher_is_better": True})
    assert normalised_scores(wide)["t"].tolist() == pytest.approx([-1.0, -0.4472136, 0.4472136, 1.0])


def test_html_page_holds_tables_and_decodable_plots(results_dir: Path, tmp_path: Path) -> None:
    reference = [{"label": "door", "start": 1000.0, "end": 2500.0}, {"label": "cough", "start": 4000.0, "end": 4600.0}]
    predicted = [{"label": "door", "start": 1100.0, "end": 2300.0}, {"label": "keys", "start": 5000.0, "end": 5500.0}]
    files = write_leaderboard(
        results_dir, PUBLISHED, tmp_path, with_html=True, timelines=[Timeline("scene_01.wav", reference, predicted)]
    )
    page = files.html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r'(src|href)="(https?:|//)', page)  # self-contained
    assert "<td>atst_frame-blocks=1</td>" in page and "<td>CP-JKU PaSST base</td>" in page
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)">', page)
    assert len(images) == 1 + 1 + 1  # bars, the heatmap of protocol hear (linear has one model: none), the timeline
    assert [alt.split(":")[0] for alt, _ in images if alt.startswith("Normalised")] == [
        "Normalised scores, protocol hear"]
    for _, encoded in images:
        assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")
    assert any(alt.startswith("Event timeline: scene_01.wav") for alt, _ in images)


def test_plots_draw_names_as_written_and_error_rates_above_one(tmp_path: Path) -> None:
    """A name holding ``$...$`` is not TeX (matplotlib failed on it); a segment error rate above 1 is not clipped;
    run dates with and without fractions of a second mix."""
    folds = {f"fold0{k}": 1.4 + 0.01 * k for k in range(5)}
    write_results(tmp_path, make_results("m_$\\bad{$", "dcase2016_task2", "dcase2016_task2-hear2021-full", folds,
                                         metric="segment_1s_er", higher_is_better=False))
    write_results(tmp_path, make_results("mel", "dcase2016_task2", "dcase2016_task2-hear2021-full", folds,
                                         metric="segment_1s_er", higher_is_better=False,
                                         date="2026-11-22T10:00:00.250000+00:00"))
    runs = collect_runs(tmp_path)
    figure = task_bars_figure(runs, published_for_runs(runs, load_published(PUBLISHED)))
    assert figure.axes[0].get_ylim()[1] > 1.4
    assert figure_png(figure).startswith(b"\x89PNG")
    assert figure.axes[0].get_xticklabels()[0].get_text() == "m_$\\bad{$"


def test_heatmap_shows_the_latest_run_as_the_tables_do(results_dir: Path) -> None:
    """With every run kept (--all-runs), the heatmap takes each model's latest run, like the pivot table."""
    runs = collect_runs(results_dir, latest_only=False)
    rows = suite_rows(runs, published_for_runs(runs, load_published(PUBLISHED)), "hear")
    mel = rows[(rows["label"] == "mel (this project)") & (rows["task"] == "esc50")]
    assert mel["value"].tolist() == pytest.approx([0.62])  # the newer of mel's two ESC-50 runs


def test_event_timeline_needs_events() -> None:
    with pytest.raises(ValueError, match="no reference and no predicted events"):
        event_timeline_figure([], [], "empty.wav")
    png = figure_png(event_timeline_figure([{"label": 3, "start": 0.0, "end": 10.0}], [], "one.wav"))
    assert png.startswith(b"\x89PNG")


def _event(label: str, start: float) -> dict:
    return {"label": label, "start": start, "end": start + 500.0}


def test_timelines_come_from_the_events_files_of_the_runs_shown(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    dcase = make_results(
        "mel", "dcase2016_task2", "dcase2016_task2-hear2021-full", {"test": 0.3}, metric="event_onset_200ms_fms"
    )
    old = write_results(root, {**dcase, "date": "2026-11-20T09:00:00+00:00"}, run="old")
    new = write_results(root, dcase, run="new")
    write_results(root, make_results("mel", "esc50", "esc50-v2.0.0-full", {"fold00": 0.5, "fold01": 0.6}))
    reference = {"a.wav": [_event("cough", 0.0)], "c.wav": [_event("door", 900.0), _event("cough", 0.0)],
                 "b.wav": [_event("keys", 0.0), _event("door", 2000.0)], "d.wav": []}
    predicted = {"c.wav": [_event("door", 100.0)], "d.wav": [_event("keys", 10.0)] * 3}
    setting = {"median_filter_ms": 250, "min_duration": 125}
    events = FoldEvents.build("dcase2016_task2", "test", 0, setting, predicted, reference)
    write_json_atomic(new.with_name(EVENTS_FILENAME), events.to_json())
    superseded = FoldEvents.build("dcase2016_task2", "test", 0, setting, {}, {"z.wav": [_event("keys", 0.0)]})
    write_json_atomic(old.with_name(EVENTS_FILENAME), superseded.to_json())

    timelines = run_timelines(collect_runs(root))  # the latest dcase run only; the scene run has no events
    # b.wav and c.wav both have two reference events: the first name wins, whatever was predicted
    assert timelines == [Timeline("mel on dcase2016_task2 (hear), b.wav", reference["b.wav"], [])]
    assert events.files["c.wav"]["reference"] == [_event("cough", 0.0), _event("door", 900.0)]  # sorted by start
    assert file_timeline("x", FoldEvents.build("t", "test", 0, None, {}, {"e.wav": []})) is None

    page = write_leaderboard(root, PUBLISHED, tmp_path / "out", with_html=True).html.read_text()
    alts = re.findall(r'<img alt="([^"]*)"', page)
    assert [alt for alt in alts if alt.startswith("Event timeline")] == [
        "Event timeline: mel on dcase2016_task2 (hear), b.wav"
    ]
    new.with_name(EVENTS_FILENAME).write_text('{"schema": "hear-atst-events/1", "task": "t"}')
    with pytest.raises(ValueError, match="events file lacks a required field"):
        run_timelines(collect_runs(root))


def test_leaderboard_command(results_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hear_atst.cli import app

    out = tmp_path / "out"
    args = ["leaderboard", "--results-dir", str(results_dir), "--published", str(PUBLISHED), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--html"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("4 runs -> ")
    # two 1-seed runs of one key: the latest is kept, and the command says so
    assert result.stderr.startswith("kept mel esc50 hear: ")
    assert "(1 seeds, the most, then the latest; 1 other run(s) left out)" in result.stderr
    assert {p.name for p in out.iterdir()} == {"leaderboard.csv", "leaderboard.md", "leaderboard.html"}
    every = CliRunner().invoke(app, [*args, "--all-runs"])
    assert every.output.startswith("5 runs -> "), every.output
    missing = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp_path / "none"), "--out", str(out)])
    assert missing.exit_code == 2 and "no results.json found" in missing.output


def test_leaderboard_finds_the_published_tables_from_any_folder(results_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hear_atst.cli import app

    monkeypatch.chdir(tmp_path)  # a data folder, not the checkout: the published tables come from the package
    result = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results_dir), "--out", "board"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "board" / "leaderboard.csv", keep_default_na=False)
    assert (table["row"] == "published").sum() > 0 and (table["row"] == "run").sum() == 4


def test_suite_score_ranks_a_model_with_the_hear_submissions_on_the_tasks_both_have(results_dir: Path) -> None:
    """The normalised score and plain mean per model over the suite's tasks, computed alike for this project's runs
    and the published HEAR rows; coverage counts the suite's tasks each model has."""
    runs = collect_runs(results_dir)
    published = load_published(PUBLISHED)
    rows = suite_rows(runs, published_for_runs(runs, published), "hear")
    table = suite_scores(rows).set_index("model")
    hear = published[(published["table"] == "hear_leaderboard") & published["task"].isin(["esc50", "dcase2016_task2"])]
    assert len(table) == 2 + hear["model"].nunique()  # mel, atst and every submission with ESC-50 or DCASE 2016
    # by hand: z per task over every model shown, clamped, averaged over the model's tasks
    esc = pd.concat([pd.Series({"atst_frame-blocks=1 (this project)": 0.72, "mel (this project)": 0.62}),
                     hear[hear["task"] == "esc50"].set_index("model")["value"]])
    dcase = pd.concat([pd.Series({"mel (this project)": 0.31}),
                       hear[hear["task"] == "dcase2016_task2"].set_index("model")["value"]])
    z_esc = ((esc - esc.mean()) / esc.std(ddof=0)).clip(-1, 1)
    z_dcase = ((dcase - dcase.mean()) / dcase.std(ddof=0)).clip(-1, 1)
    mel = table.loc["mel (this project)"]
    assert mel["normalised"] == pytest.approx((z_esc["mel (this project)"] + z_dcase["mel (this project)"]) / 2)
    assert mel["mean"] == pytest.approx((0.62 + 0.31) / 2) and mel["coverage"] == "2/2"
    atst = table.loc["atst_frame-blocks=1 (this project)"]
    assert atst["coverage"] == "1/2"
    assert atst["normalised"] == pytest.approx(z_esc["atst_frame-blocks=1 (this project)"])
    passt = table.loc["CP-JKU PaSST base"]
    assert passt["from"] != "this project" and passt["coverage"] == "2/2"
    assert passt["mean"] == pytest.approx((esc["CP-JKU PaSST base"] + dcase["CP-JKU PaSST base"]) / 2)
    assert list(table["normalised"]) == sorted(table["normalised"], reverse=True)


def test_a_small_task_shows_the_full_size_published_numbers_as_context_only(tmp_path: Path) -> None:
    folds = {f"fold0{k}": 0.5 for k in range(5)}
    write_results(tmp_path / "runs", make_results("mel", "esc50", "esc50-v2.0.0-small", folds))
    files = write_leaderboard(tmp_path / "runs", PUBLISHED, tmp_path / "out", with_html=True)
    md = files.markdown.read_text()
    task = md.split("## Task `esc50-small`")[1]
    ranked = task.split("### Comparable: protocol `hear`, metric `top1_acc`")[1].split("###")[0]
    assert "| 1 | mel | 0.5000 ± 0.0000 | this project |" in ranked and "PaSST" not in ranked  # ranked alone
    context = task.split("### Context: published results of the full-size task `esc50` (not comparable)")[1]
    assert "| CP-JKU PaSST base | hear | top1_acc |" in context
    suite = md.split("## Suite score, protocol `hear`")[1].split("## ")[0]
    assert "One model only: no normalised score" in suite
    assert "| 1 | mel (this project) | this project | – | 0.5000 | 1/1 |" in suite
    table = pd.read_csv(files.csv, keep_default_na=False)
    full = table[table["comparison"] == "full-size context"]
    assert set(full["task"]) == {"esc50"} and set(full["for_task"]) == {"esc50-small"}
    page = files.html.read_text()
    assert "Normalised scores" not in page  # one model: no heatmap
    assert "grey box and dots: the published values of the full-size task, context only" in page
    assert "comparable published values" not in page  # there are none
