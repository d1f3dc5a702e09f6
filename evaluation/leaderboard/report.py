"""`hear-atst leaderboard`: runs + published tables -> leaderboard.csv, leaderboard.md and optionally the HTML page.

The HTML page draws, per run whose ``results.json`` holds per-class scores, a confusion matrix (multiclass tasks) or
one bar per label (average precision for multilabel scene tasks, onset F-measure for event tasks).

The HTML page draws an event timeline for every event-task run with a ``test.events.json`` next to its
``results.json``: predicted vs reference events of one test file, the file with the most reference events (ties:
the first name), so that every run of a task shows the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.leaderboard import html as html_page
from evaluation.leaderboard.aggregate import collect_runs, published_for_runs
from evaluation.leaderboard.published import load_published
from evaluation.leaderboard.suite import normalised_scores, suite_rows
from evaluation.leaderboard.tables import leaderboard_frame, leaderboard_sections, render_markdown
from evaluation.results import EVENTS_FILENAME, FoldEvents, read_events, read_results
from hear_atst.atomic import write_text_atomic

Event = dict[str, Any]


@dataclass(frozen=True)
class Timeline:
    """Predicted vs reference events of one file of an event task."""

    title: str
    reference: list[Event]
    predicted: list[Event]


@dataclass(frozen=True)
class LeaderboardFiles:
    csv: Path
    markdown: Path
    html: Path | None
    runs: pd.DataFrame


def write_leaderboard(
    results_dir: str | Path,
    published_dir: str | Path,
    out_dir: str | Path,
    *,
    latest_only: bool = True,
    with_html: bool = False,
    timelines: list[Timeline] | None = None,
) -> LeaderboardFiles:
    """Aggregate the runs under ``results_dir``; write ``leaderboard.csv`` / ``.md`` (and ``.html``) to ``out_dir``.

    ``timelines`` (HTML only): the event timelines to draw; ``None`` draws :func:`run_timelines` of the runs shown.
    """
    out_dir = Path(out_dir)
    runs = collect_runs(results_dir, latest_only=latest_only)
    labelled = published_for_runs(runs, load_published(published_dir))
    csv_path, md_path = out_dir / "leaderboard.csv", out_dir / "leaderboard.md"
    write_text_atomic(csv_path, leaderboard_frame(runs, labelled).to_csv(index=False))
    sections = leaderboard_sections(runs, labelled)
    write_text_atomic(md_path, render_markdown(sections))
    html_path = None
    if with_html:
        html_path = out_dir / "leaderboard.html"
        timelines = run_timelines(runs) if timelines is None else timelines
        write_text_atomic(
            html_path,
            html_page.render_html("hear-atst leaderboard", sections, _figures(runs, labelled, timelines)),
        )
    return LeaderboardFiles(csv_path, md_path, html_path, runs)


def run_timelines(runs: pd.DataFrame) -> list[Timeline]:
    """One timeline per run (in table order) whose folder holds a ``test.events.json`` with something to draw."""
    timelines = []
    for run in runs.itertuples(index=False):
        path = Path(run.path).with_name(EVENTS_FILENAME)
        if path.is_file():
            timeline = file_timeline(f"{run.model} on {run.task} ({run.protocol})", read_events(path))
            if timeline is not None:
                timelines.append(timeline)
    return timelines


def file_timeline(run_title: str, events: FoldEvents) -> Timeline | None:
    """The timeline of the test file with the most reference events (ties: the first name); ``None`` when that file
    has no reference and no predicted events."""
    if not events.files:
        return None
    name = min(events.files, key=lambda file: (-len(events.files[file]["reference"]), file))
    chosen = events.files[name]
    if not chosen["reference"] and not chosen["predicted"]:
        return None
    return Timeline(f"{run_title}, {name}", chosen["reference"], chosen["predicted"])


def _figures(runs: pd.DataFrame, labelled: pd.DataFrame, timelines: list[Timeline]) -> list[tuple[str, bytes]]:
    shown = runs.groupby(["task", "protocol", "metric"])
    comparable = any(len(html_page.comparable_values(labelled, *key)) for key, _ in shown)
    full_size = any(len(html_page.full_size_values(labelled, *key)) for key, _ in shown)
    caption = "Per task: runs (bars, error bar = sample std over folds × seeds)"
    if comparable:
        caption += "; black box and dots: the comparable published values (same protocol and metric)"
    if full_size:
        caption += "; grey box and dots: the published values of the full-size task, context only (not ranked)"
    figures = [(caption, html_page.figure_png(html_page.task_bars_figure(runs, labelled)))]
    for protocol in sorted(runs["protocol"].unique()):
        normalised = normalised_scores(suite_rows(runs, labelled, protocol))
        if len(normalised) < 2:  # one model: every score normalises to 0
            continue
        title = f"Normalised scores, protocol {protocol}"
        figures.append(
            (
                f"{title}: per task z-score over the {len(normalised)} models shown (population std), sign flipped "
                "where lower is better, clamped to [-1, 1]",
                html_page.figure_png(html_page.heatmap_figure(normalised, title)),
            )
        )
    figures.extend(class_figures(runs))
    for timeline in timelines:
        figures.append(
            (
                f"Event timeline: {timeline.title}",
                html_page.figure_png(
                    html_page.event_timeline_figure(timeline.reference, timeline.predicted, timeline.title)
                ),
            )
        )
    return figures


def class_figures(runs: pd.DataFrame) -> list[tuple[str, bytes]]:
    """Per run (table order) with per-class scores in its results.json: its confusion matrix or per-label bars."""
    figures = []
    for run in runs.itertuples(index=False):
        block = read_results(run.path).get("class_scores")
        if not block:
            continue
        title = f"{run.model} on {run.task} ({run.protocol})"
        labels = [entry["label"] for entry in block["classes"]]
        if "confusion" in block:
            caption = (f"Confusion matrix: {title}, seed {block['confusion']['seed']}, every test fold; rows: "
                       "reference label, shaded by the share of its clips")
            figure = html_page.confusion_figure(block["confusion"]["counts"], labels, title)
        else:
            metric = "average_precision" if "average_precision" in block["classes"][0] else "f_measure"
            caption = f"Per-label {metric.replace('_', ' ')}: {title} ({block['basis']})"
            figure = html_page.class_bars_figure(labels, [entry[metric] for entry in block["classes"]],
                                                 metric.replace("_", " "), title)
        figures.append((caption, html_page.figure_png(figure)))
    return figures
