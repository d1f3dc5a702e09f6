"""The leaderboard as tables: the long CSV, and the sections that the Markdown and HTML pages both render.

Sections (in this order): one model × task pivot per protocol (cell = mean ± std), one suite score table per protocol
(:mod:`evaluation.leaderboard.suite`), the run details (interval, run date, weights hash), then per task the runs
ranked together with the *comparable* published rows (same protocol and metric), followed by the *context* rows
(other protocols or metrics, or the published rows of the full-size task of a task of another size), labelled as
not comparable and never ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from evaluation.leaderboard.aggregate import SCORE_DETAIL_COLUMNS, sort_by_score
from evaluation.leaderboard.suite import suite_rows, suite_scores

LEADERBOARD_COLUMNS = (
    "row", "comparison", "model", "task", "protocol", "metric", "value", *SCORE_DETAIL_COLUMNS, "source", "note",
    "path",
    "for_task",
)


@dataclass(frozen=True)
class Section:
    """A heading, an optional paragraph, and an optional table (all cells already formatted as text)."""

    level: int
    title: str
    text: str = ""
    table: pd.DataFrame | None = None


def leaderboard_frame(runs: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Runs and the published rows of their tasks in one long table (:data:`LEADERBOARD_COLUMNS`).

    ``row`` is ``run`` or ``published``; ``comparison`` is ``run``, ``comparable``, ``context`` or ``full-size context``
    (then ``for_task`` names the run task of another size that the row is context for).
    """
    run_rows = runs.rename(columns={"mean": "value"}).assign(
        row="run", comparison="run", source="this project", note="", date=runs["date"].map(_iso_date)
    )
    published_rows = published.assign(row="published", path="")
    table = pd.concat([run_rows, published_rows], ignore_index=True)
    return table.reindex(columns=list(LEADERBOARD_COLUMNS))


def format_score(mean: float, std: float | None = None) -> str:
    """``0.8125 ± 0.0130``, or just the mean when there is no spread; ``–`` for a missing score."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f}"


def format_interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "–"
    return f"[{low:.4f}, {high:.4f}]"


def leaderboard_sections(runs: pd.DataFrame, labelled_published: pd.DataFrame) -> list[Section]:
    """Every section of the leaderboard page, from the runs and :func:`aggregate.published_for_runs`."""
    sections = [
        Section(
            1,
            "Leaderboard",
            f"{len(runs)} runs. Scores are on a 0–1 scale; a cell is mean ± sample std over folds × seeds. "
            "Published rows are ranked with a run only when their protocol and metric are the same; "
            "the others are listed as context.",
        )
    ]
    for protocol, group in runs.groupby("protocol", sort=True):
        sections.append(Section(2, f"Protocol `{protocol}`", "Latest run of each model and task.", _pivot(group)))
    for protocol in sorted(runs["protocol"].unique()):
        sections.append(_suite_section(str(protocol), runs, labelled_published))
    sections.append(Section(2, "Runs", "", _run_details(runs)))
    for task, task_runs in runs.groupby("task", sort=True):
        sections.extend(_task_sections(str(task), task_runs, labelled_published))
    return sections


def _suite_section(protocol: str, runs: pd.DataFrame, labelled: pd.DataFrame) -> Section:
    """The suite score table of one protocol: this project's models and the comparable published ones."""
    rows = suite_rows(runs, labelled, protocol)
    table = suite_scores(rows)
    tasks = sorted(rows["task"].unique())
    left_out = sorted(set(runs.loc[runs["protocol"] == protocol, "task"]) - set(tasks))
    published = int((table["from"] != "this project").sum())
    text = (f"Suite: {len(tasks)} task(s) ({', '.join(tasks)}); {published} published model(s) with at least one of "
            "them.")
    if left_out:
        text += f" Left out (no comparable published numbers): {', '.join(left_out)}."
    text += (" Normalised score: per task, z-score of the primary scores of the models shown (population std, "
            "sign flipped where lower is better), clamped to [-1, 1], averaged over the tasks a model has; mean: "
            "plain mean of its primary scores (higher-is-better ones). Coverage: tasks of the suite it has.")
    if len(table) < 2:
        text += " One model only: no normalised score (nothing to normalise against)."
    shown = pd.DataFrame({
        "rank": range(1, len(table) + 1),
        "model": table["model"],
        "from": table["from"],
        "normalised score": table["normalised"].map(lambda v: "–" if v is None or pd.isna(v) else f"{v:+.3f}"),
        "mean score": table["mean"].map(lambda v: "–" if v is None or pd.isna(v) else f"{v:.4f}"),
        "coverage": table["coverage"],
    })
    return Section(2, f"Suite score, protocol `{protocol}`", text, shown)


def _iso_date(value: pd.Timestamp) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, pd.Timestamp) else str(value)


def _pivot(runs: pd.DataFrame) -> pd.DataFrame:
    cells = runs.assign(
        cell=[format_score(m, s) for m, s in zip(runs["mean"], runs["std"], strict=True)],
        column=runs["task"] + " (" + runs["metric"] + ")",
    )
    latest = cells.sort_values("date", kind="stable").drop_duplicates(["model", "column"], keep="last")
    pivot = latest.pivot(index="model", columns="column", values="cell").fillna("–")
    pivot.columns.name = None
    return pivot.reset_index()


def _run_details(runs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": runs["model"],
            "task": runs["task"],
            "protocol": runs["protocol"],
            "metric": runs["metric"],
            "score": [format_score(m, s) for m, s in zip(runs["mean"], runs["std"], strict=True)],
            "95% interval": [
                format_interval(lo, hi) for lo, hi in zip(runs["ci95_low"], runs["ci95_high"], strict=True)
            ],
            "n": runs["n"].map(lambda n: "–" if pd.isna(n) else str(int(n))),
            "date": runs["date"].map(_iso_date),
            "weights sha256": runs["weights_sha256"].map(lambda h: h[:12] if isinstance(h, str) else "–"),
        }
    ).reset_index(drop=True)


def _task_sections(task: str, runs: pd.DataFrame, labelled: pd.DataFrame) -> list[Section]:
    sections = [Section(2, f"Task `{task}`")]
    rows = labelled[(labelled["task"] == task) & (labelled["comparison"] != "full-size context")]
    for (protocol, metric), group in runs.groupby(["protocol", "metric"], sort=True):
        same = rows[(rows["protocol"] == protocol) & (rows["metric"] == metric)]
        ranked = pd.concat(
            [
                pd.DataFrame(
                    {"model": group["model"], "mean": group["mean"], "std": group["std"], "from": "this project"}
                ),
                pd.DataFrame({"model": same["model"], "mean": same["value"], "std": None, "from": same["source"]}),
            ],
            ignore_index=True,
        ).assign(higher_is_better=bool(group["higher_is_better"].iloc[0]), task=task, protocol=protocol)
        ranked = sort_by_score(ranked).reset_index(drop=True)
        table = pd.DataFrame(
            {
                "rank": range(1, len(ranked) + 1),
                "model": ranked["model"],
                "score": [format_score(m, s) for m, s in zip(ranked["mean"], ranked["std"], strict=True)],
                "from": ranked["from"],
            }
        )
        sections.append(Section(3, f"Comparable: protocol `{protocol}`, metric `{metric}`", "", table))
    context = rows[rows["comparison"] == "context"]
    if len(context):
        table = context.loc[:, ["model", "protocol", "metric", "value", "source", "note"]].assign(
            value=context["value"].map(format_score)
        )
        sections.append(
            Section(
                3,
                "Context: other protocols or metrics (not comparable)",
                "Published with a different protocol or metric than the runs above: shown for orientation only.",
                table.reset_index(drop=True),
            )
        )
    full = labelled[(labelled["comparison"] == "full-size context") & (labelled["for_task"] == task)]
    if len(full):
        full_task = str(full["task"].iloc[0])
        table = full.sort_values("value", ascending=False, kind="stable").loc[
            :, ["model", "protocol", "metric", "value", "source"]].assign(value=lambda t: t["value"].map(format_score))
        sections.append(
            Section(
                3,
                f"Context: published results of the full-size task `{full_task}` (not comparable)",
                f"{task} is a task of another size than {full_task}: these numbers show what the full-size task "
                "reaches and are never ranked with the runs above.",
                table.reset_index(drop=True),
            )
        )
    return sections


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table of already formatted cells (``|`` escaped)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def render_markdown(sections: list[Section]) -> str:
    parts = []
    for section in sections:
        parts.append("#" * section.level + " " + section.title)
        if section.text:
            parts.append(section.text)
        if section.table is not None:
            parts.append(markdown_table(section.table))
    return "\n\n".join(parts) + "\n"
