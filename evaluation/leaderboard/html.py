"""A self-contained HTML leaderboard page: inline CSS, the leaderboard tables, and matplotlib plots as base64 PNG.

Plots:

- per task, one bar per run (error bar = sample std over folds × seeds) and, beside them, a box of the comparable
  published values (same protocol and metric) with each value drawn as a dot;
- per protocol, a normalised score heatmap as on the HEAR site: for each task column, the scores of every row shown
  (this project's runs plus the comparable published rows) become z = (x − mean) / std with the population std
  (ddof = 0), negated where lower is better, then clamped to [−1, 1]; a column with one value or zero spread is 0;
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
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
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


@literal_text
def task_bars_figure(runs: pd.DataFrame, labelled_published: pd.DataFrame) -> Figure:
    """Per task (one panel each): the runs as bars with std error bars, and the comparable published values."""
    groups = list(runs.groupby(["task", "protocol", "metric"], sort=True))
    columns = min(3, len(groups))
    rows = -(-len(groups) // columns)
    figure = Figure(figsize=(5.0 * columns, 3.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(groups) :]:
        axis.set_visible(False)
    for axis, ((task, protocol, metric), group) in zip(axes.flat, groups, strict=False):
        positions = np.arange(len(group))
        axis.bar(positions, group["mean"], yerr=group["std"].fillna(0.0).to_numpy(float), capsize=4, color="C0")
        labels = list(group["model"])
        same = labelled_published[
            (labelled_published["task"] == task)
            & (labelled_published["protocol"] == protocol)
            & (labelled_published["metric"] == metric)
        ]
        if len(same):
            where = len(group)
            axis.boxplot([same["value"].to_numpy(float)], positions=[where], widths=0.6)
            axis.plot(np.full(len(same), where), same["value"], "o", color="0.4", markersize=3)
            labels.append(f"published\n({protocol}, n={len(same)})")
        axis.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        axis.set_title(f"{task} — {metric} ({protocol})", fontsize=9)
        tops = [*(group["mean"] + group["std"].fillna(0.0)), *same["value"]]
        axis.set_ylim(0.0, max(1.0, *(1.05 * top for top in tops if np.isfinite(top))))  # error rates exceed 1
    figure.tight_layout()
    return figure


def normalised_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Rows × tasks of raw scores -> the HEAR-site normalisation (see the module docstring).

    ``table`` holds the columns ``label``, ``task``, ``value``, ``higher_is_better``; returns a label × task frame.
    """
    signed = table["value"].where(table["higher_is_better"].astype(bool), -table["value"])
    wide = table.assign(signed=signed).pivot_table(index="label", columns="task", values="signed", aggfunc="first")
    wide = wide.reindex(index=table["label"].drop_duplicates())  # rows in the order given (this project's first)
    mean = wide.mean(axis=0)
    std = wide.std(axis=0, ddof=0)
    z = (wide - mean) / std.where(std > 0)
    z = z.where(~(wide.notna() & z.isna()), 0.0)  # a column with one value or zero spread
    return z.clip(-1.0, 1.0)


@literal_text
def heatmap_figure(normalised: pd.DataFrame, title: str) -> Figure:
    """The normalised scores as a heatmap (blank = no score)."""
    height = 1.5 + 0.28 * len(normalised)
    figure = Figure(figsize=(2.0 + 1.1 * normalised.shape[1], height))
    axis = figure.subplots()
    image = axis.imshow(np.ma.masked_invalid(normalised.to_numpy(float)), cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    axis.set_xticks(np.arange(normalised.shape[1]), normalised.columns, rotation=30, ha="right", fontsize=8)
    axis.set_yticks(np.arange(len(normalised)), normalised.index, fontsize=8)
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, label="z-score per task, clamped to [-1, 1]")
    figure.tight_layout()
    return figure


def heatmap_rows(runs: pd.DataFrame, labelled_published: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The runs of one protocol (the latest of each model and task, as the tables show, also under ``--all-runs``)
    plus the published rows comparable with them, ready for :func:`normalised_scores`."""
    mine = runs[runs["protocol"] == protocol].sort_values("date", kind="stable")
    mine = mine.drop_duplicates(["model", "task"], keep="last")
    comparable = labelled_published[
        (labelled_published["protocol"] == protocol) & (labelled_published["comparison"] == "comparable")
    ]
    comparable = comparable.merge(mine.loc[:, ["task", "metric"]].drop_duplicates(), on=["task", "metric"])
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "label": mine["model"] + " (this project)",
                    "task": mine["task"],
                    "value": mine["mean"],
                    "higher_is_better": mine["higher_is_better"],
                }
            ),
            pd.DataFrame(
                {
                    "label": comparable["model"],
                    "task": comparable["task"],
                    "value": comparable["value"],
                    "higher_is_better": comparable["higher_is_better"],
                }
            ),
        ],
        ignore_index=True,
    )


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
            parts.append(section.table.to_html(index=False, escape=True, border=0, na_rep="–"))
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
