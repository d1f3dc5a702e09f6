"""One score per suite: every model's tasks folded into a normalised score and a plain mean, ranked together.

For one protocol, the *rows* are this project's runs (the latest of each model and task) plus the published rows
comparable with them (same task key, protocol and metric: e.g. the HEAR 2021 submissions for the ``hear`` protocol,
never rows of a task of another size). The *suite* is the set of run tasks that have comparable published rows, so
that a model is ranked with the published ones on the tasks both have; when no run task has any (small tasks only),
it is every run task, and only this project's models are ranked.

- **Normalised score** (the HEAR paper's per-task normalisation, as on hearbenchmark.com): per task, every row's
  primary score becomes ``z = (x - mean) / std`` over the rows that have the task (population std, sign flipped
  where lower is better), clamped to [-1, 1]; a task with one value or no spread gives 0. A model's normalised score
  is the mean of its z over the suite's tasks it has.
- **Mean score**: the plain mean of the model's primary scores over the suite's tasks it has (tasks whose score is
  lower-is-better are left out of it: an error rate does not average with accuracies).
- **Coverage**: the suite's tasks the model has, ``k/N``. Models are ranked by normalised score; a model covering
  fewer tasks is ranked on those only, which its coverage shows.
"""

from __future__ import annotations

import pandas as pd

SUITE_COLUMNS = ("model", "from", "normalised", "mean", "tasks", "coverage")


def normalised_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Rows × tasks of raw scores -> the per-task normalisation above (label × task frame, rows in given order).

    ``table`` holds the columns ``label``, ``task``, ``value``, ``higher_is_better``.
    """
    signed = table["value"].where(table["higher_is_better"].astype(bool), -table["value"])
    wide = table.assign(signed=signed).pivot_table(index="label", columns="task", values="signed", aggfunc="first")
    wide = wide.reindex(index=table["label"].drop_duplicates())  # rows in the order given (this project's first)
    mean = wide.mean(axis=0)
    std = wide.std(axis=0, ddof=0)
    z = (wide - mean) / std.where(std > 0)
    z = z.where(~(wide.notna() & z.isna()), 0.0)  # a column with one value or zero spread
    return z.clip(-1.0, 1.0)


def suite_rows(runs: pd.DataFrame, labelled_published: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The runs of one protocol (the latest of each model and task) plus the published rows comparable with them,
    as ``label`` (a run's model id + `` (this project)``, so that no name collides with a published one), ``from``,
    ``task``, ``value``, ``higher_is_better``."""
    mine = runs[runs["protocol"] == protocol].sort_values("date", kind="stable")
    mine = mine.drop_duplicates(["model", "task"], keep="last")
    comparable = labelled_published[
        (labelled_published["protocol"] == protocol) & (labelled_published["comparison"] == "comparable")
    ]
    comparable = comparable.merge(mine.loc[:, ["task", "metric"]].drop_duplicates(), on=["task", "metric"])
    if len(comparable):
        mine = mine[mine["task"].isin(set(comparable["task"]))]
    source = comparable["table"] if "table" in comparable else comparable["source"]
    return pd.concat(
        [
            pd.DataFrame({"label": mine["model"] + " (this project)", "from": "this project", "task": mine["task"],
                          "value": mine["mean"], "higher_is_better": mine["higher_is_better"]}),
            pd.DataFrame({"label": comparable["model"], "from": "published: " + source, "task": comparable["task"],
                          "value": comparable["value"], "higher_is_better": comparable["higher_is_better"]}),
        ],
        ignore_index=True,
    )


def suite_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model (:data:`SUITE_COLUMNS`), best normalised score first (ties: this project's first, then by name).

    ``normalised`` is None when fewer than two models are shown (nothing to normalise against)."""
    if rows.empty:
        return pd.DataFrame(columns=list(SUITE_COLUMNS))
    suite = sorted(rows["task"].unique())
    z = normalised_scores(rows)
    several = len(z) >= 2
    higher = rows[rows["higher_is_better"].astype(bool)]
    out = []
    for label, source in rows.loc[:, ["label", "from"]].drop_duplicates("label").itertuples(index=False):
        tasks = z.loc[label].dropna()
        plain = higher[higher["label"] == label]["value"]
        out.append({"model": label, "from": source, "normalised": float(tasks.mean()) if several else None,
                    "mean": float(plain.mean()) if len(plain) else None, "tasks": len(tasks),
                    "coverage": f"{len(tasks)}/{len(suite)}"})
    table = pd.DataFrame(out, columns=list(SUITE_COLUMNS))
    order = table.assign(_mine=table["from"] != "this project", _score=table["normalised"].fillna(table["mean"]))
    order = order.sort_values(["_score", "_mine", "model"], ascending=[False, True, True], kind="stable")
    return order.drop(columns=["_mine", "_score"]).reset_index(drop=True)
