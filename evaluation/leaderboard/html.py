"""A self-contained HTML leaderboard page: inline CSS, the leaderboard tables, and matplotlib plots as base64 PNG.

Plots:

- per task, one bar per run (error bar = sample std over folds × seeds) and, beside them, a box of the comparable
  published values (same protocol and metric) with each value drawn as a dot; for a task of another size than a
  published one, a grey box of the full-size task's published values, labelled as context;
- per protocol with at least two models, a normalised score heatmap as on the HEAR site
  (:func:`evaluation.leaderboard.suite.normalised_scores`);
- per run with per-class scores, a confusion matrix (multiclass) or one bar per label (multilabel and event tasks);
- for an event task, a timeline of predicted vs reference events for one file (one lane pair per label).
"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from evaluation.leaderboard.tables import Section

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1320px; color: #222;
       font-size: 16px; line-height: 1.4; }
div.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; }
figcaption { font-size: 14px; color: #444; }
p.note { color: #555; }
"""


def literal_text(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build a figure whose texts are drawn as written: a model, task or file name holding ``$...$`` would
    otherwise be parsed as TeX (and may fail to draw)."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context({"text.parse_math": False}):
            return build(*args, **kwargs)

    return wrapper


def figure_png(figure: Figure) -> bytes:
    """Render a matplotlib figure as PNG bytes (figures are built without pyplot: no global state, no GUI)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return buffer.getvalue()


def comparable_values(labelled_published: pd.DataFrame, task: str, protocol: str, metric: str) -> pd.DataFrame:
    """The published rows ranked with runs of (task, protocol, metric)."""
    return labelled_published[
        (labelled_published["task"] == task)
        & (labelled_published["protocol"] == protocol)
        & (labelled_published["metric"] == metric)
        & (labelled_published["comparison"] == "comparable")
    ]


def full_size_values(labelled_published: pd.DataFrame, task: str, protocol: str, metric: str) -> pd.DataFrame:
    """The full-size task's published rows shown as context for a run task of another size (same protocol and
    metric)."""
    return labelled_published[
        (labelled_published["comparison"] == "full-size context")
        & (labelled_published["for_task"] == task)
        & (labelled_published["protocol"] == protocol)
        & (labelled_published["metric"] == metric)
    ]


@literal_text
def task_bars_figure(runs: pd.DataFrame, labelled_published: pd.DataFrame) -> Figure:
    """Per task (one panel each): the runs as bars with std error bars, the comparable published values, and for a
    task of another size the full-size task's published values as a labelled grey context box."""
    groups = list(runs.groupby(["task", "protocol", "metric"], sort=True))
    columns = min(2, len(groups))
    rows = -(-len(groups) // columns)
    figure = Figure(figsize=(6.5 * columns, 4.0 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(groups) :]:
        axis.set_visible(False)
    for axis, ((task, protocol, metric), group) in zip(axes.flat, groups, strict=False):
        positions = np.arange(len(group))
        axis.bar(positions, group["mean"], yerr=group["std"].fillna(0.0).to_numpy(float), capsize=4, color="C0")
        labels = list(group["model"])
        same = comparable_values(labelled_published, task, protocol, metric)
        full = full_size_values(labelled_published, task, protocol, metric)
        full_name = str(full["task"].iloc[0]) if len(full) else ""
        for values, colour, label in ((same, "black", f"published\n({protocol}, n={len(same)})"),
                                      (full, "0.55", f"full-size {full_name}\n(context, n={len(full)})")):
            if len(values):
                where = len(labels)
                axis.boxplot([values["value"].to_numpy(float)], positions=[where], widths=0.6,
                             boxprops={"color": colour}, medianprops={"color": colour})
                axis.plot(np.full(len(values), where), values["value"], "o", color=colour, alpha=0.6, markersize=3)
                labels.append(label)
        axis.set_xticks(np.arange(len(labels)), labels, rotation=25, ha="right", fontsize=10)
        axis.set_title(f"{task} — {metric} ({protocol})", fontsize=11)
        tops = [*(group["mean"] + group["std"].fillna(0.0)), *same["value"], *full["value"]]
        axis.set_ylim(0.0, max(1.0, *(1.05 * top for top in tops if np.isfinite(top))))  # error rates exceed 1
    figure.tight_layout()
    return figure


@literal_text
def heatmap_figure(normalised: pd.DataFrame, title: str) -> Figure:
    """The normalised scores as a heatmap (blank = no score)."""
    height = 1.5 + 0.3 * len(normalised)
    figure = Figure(figsize=(3.0 + 1.2 * normalised.shape[1], height))
    axis = figure.subplots()
    image = axis.imshow(np.ma.masked_invalid(normalised.to_numpy(float)), cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    axis.set_xticks(np.arange(normalised.shape[1]), normalised.columns, rotation=30, ha="right", fontsize=9)
    axis.set_yticks(np.arange(len(normalised)), normalised.index, fontsize=9)
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, label="z-score per task, clamped to [-1, 1]")
    figure.tight_layout()
    return figure


@literal_text
def confusion_figure(counts: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> Figure:
    """A multiclass run's confusion matrix: rows the reference label, columns the predicted one, each row as shares
    of its clips (the counts written in the cells when there are few classes)."""
    matrix = np.asarray(counts, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = len(labels)
    side = min(11.0, 3.0 + 0.4 * size)
    figure = Figure(figsize=(side + 2.0, side))
    axis = figure.subplots()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if size <= 40:
        font = 10 if size <= 15 else 7
        axis.set_xticks(np.arange(size), labels, rotation=60, ha="right", fontsize=font)
        axis.set_yticks(np.arange(size), labels, fontsize=font)
    if size <= 15:
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                axis.text(column, row, f"{int(count)}", ha="center", va="center", fontsize=9,
                          color="white" if shares[row, column] > 0.5 else "black")
    axis.set_xlabel("predicted")
    axis.set_ylabel("reference")
    axis.set_title(title, fontsize=11)
    figure.colorbar(image, ax=axis, label="share of the reference label's clips")
    figure.tight_layout()
    return figure


@literal_text
def class_bars_figure(labels: Sequence[str], values: Sequence[float | None], metric: str, title: str) -> Figure:
    """One horizontal bar per label (a missing value is drawn as an empty row, labelled n/a)."""
    numbers = np.array([np.nan if v is None else float(v) for v in values])
    figure = Figure(figsize=(9.0, 1.2 + 0.3 * len(labels)))
    axis = figure.subplots()
    positions = np.arange(len(labels))
    axis.barh(positions, np.nan_to_num(numbers), color="C0")
    for position, value in zip(positions, numbers, strict=True):
        axis.text(0.01 if np.isnan(value) else value + 0.01, position, "n/a" if np.isnan(value) else f"{value:.3f}",
                  va="center", fontsize=9)
    axis.set_yticks(positions, labels, fontsize=9 if len(labels) <= 40 else 6)
    axis.invert_yaxis()
    axis.set_xlim(0.0, 1.1)
    axis.set_xlabel(metric)
    axis.set_title(title, fontsize=11)
    figure.tight_layout()
    return figure


@literal_text
def event_timeline_figure(
    reference: Sequence[dict[str, Any]], predicted: Sequence[dict[str, Any]], title: str
) -> Figure:
    """Predicted vs reference events of one file: per label a reference lane (grey) and a prediction lane (blue).

    Events are HEAR event dicts ``{"label", "start", "end"}`` with times in milliseconds; the axis is in seconds.
    """
    labels = sorted({str(event["label"]) for event in [*reference, *predicted]})
    if not labels:
        raise ValueError(f"{title}: no reference and no predicted events to draw")
    figure = Figure(figsize=(11, 0.9 + 0.55 * len(labels)))
    axis = figure.subplots()
    for row, label in enumerate(labels):
        for events, offset, colour in ((reference, -0.2, "0.55"), (predicted, 0.2, "C0")):
            spans = [
                (event["start"] / 1000.0, (event["end"] - event["start"]) / 1000.0)
                for event in events
                if str(event["label"]) == label
            ]
            axis.broken_barh(spans, (row + offset - 0.17, 0.34), facecolors=colour)
    axis.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    axis.set_ylim(-0.6, len(labels) - 0.4)
    axis.invert_yaxis()
    axis.set_xlabel("time (s)")
    axis.set_title(f"{title} — grey: reference (upper lane), blue: predicted (lower lane)", fontsize=9)
    figure.tight_layout()
    return figure


def render_html(title: str, sections: Sequence[Section], figures: Sequence[tuple[str, bytes]]) -> str:
    """The page: the sections' headings, paragraphs and tables, then each (caption, PNG) as an inline image."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
    ]
    for section in sections:
        level = min(section.level, 6)
        parts.append(f"<h{level}>{_inline_code(section.title)}</h{level}>")
        if section.text:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>')
        if section.table is not None:
            parts.append('<div class="table">' + section.table.to_html(index=False, escape=True, border=0,
                                                                        na_rep="–") + "</div>")
    if figures:
        parts.append("<h2>Plots</h2>")
    for caption, png in figures:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _inline_code(text: str) -> str:
    """Escape a heading and turn Markdown `code` spans into <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{piece}</code>" if index % 2 else piece for index, piece in enumerate(pieces))
