"""Collect every run under a results directory into one pandas table, and join it with the published tables.

A run is one ``results.json`` (schema in :mod:`evaluation.results`). Its ``protocol`` here is the probe's run name
(:attr:`evaluation.protocol.ProbeConfig.run_name`): ``hear`` or ``linear`` with default settings, else the settings
that differ (``hear-grid=fast``, ``hear-max-epochs=40``, ``linear-lr=3e-05`` ...). Runs are keyed by (model id, task
key, protocol); by default only the latest run (by its ``date``) of each key is kept.

Protocols are never mixed silently: a published row is *comparable* with a run only when both its protocol and its
metric equal the run's (``hear`` with ``hear``: a run with a reduced grid, an epoch cap or bf16 probes is never
ranked with the HEAR leaderboard); every other published row of the task is *context*, and is labelled so wherever
it is shown. EVAR's ``evar-linear`` rows are context for this project's ``linear`` protocol, because EVAR's splits
and clip lengths differ from the HEAR task folders (hear_eval.md §5.3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.results import RESULTS_FILENAME, read_results

# What a run says about its score besides the mean, in the order every table shows it.
SCORE_DETAIL_COLUMNS = ("std", "ci95_low", "ci95_high", "n", "date", "weights_sha256")
RUN_COLUMNS = (
    "model", "model_name", "task", "task_name", "task_folder", "protocol", "metric", "higher_is_better", "mean",
    *SCORE_DETAIL_COLUMNS, "path",
)

# Task names whose full mode is one of several leaderboard columns (Speech commands 5h / full): their key always
# carries the mode, so ``speech_commands-full`` never collides with ``speech_commands-5h``.
ALWAYS_SUFFIXED_TASKS = frozenset({"speech_commands", "nsynth_pitch"})

# Clips in HEAR's release of a leaderboard task (hear_eval.md §2.4), by task key: only the tasks whose preparation
# in tasks/ was checked to give that count (the other tasks' listed counts are unverified; Beehive's is disputed).
OFFICIAL_CLIPS = {"dcase2016_task2": 72, "esc50": 2000, "speech_commands-5h": 22890, "speech_commands-full": 100503}


def task_key(task_name: str, folder: str, clips: int | None = None) -> str:
    """This project's task key: the task name, plus ``-<mode>`` unless the mode is ``full``, plus ``-<n>clips`` when
    the folder holds another number of clips than HEAR's release of that task.

    The mode is the last ``-`` part of the HEAR folder name ``{task_name}-{version}-{mode}``, e.g.
    ``esc50-v2.0.0-full`` -> ``esc50``, ``speech_commands-v0.0.2-5h`` -> ``speech_commands-5h``,
    ``esc50-v2.0.0-small`` -> ``esc50-small`` (a small run is never compared with full-task numbers); ESC-10 laid out
    as ESC-50 (400 clips) -> ``esc50-400clips``, never ranked with ESC-50 numbers. ``clips`` is None in results
    written before it was recorded.
    """
    mode = folder.rsplit("-", 1)[-1] if folder.startswith(f"{task_name}-") else "full"
    key = task_name if mode == "full" and task_name not in ALWAYS_SUFFIXED_TASKS else f"{task_name}-{mode}"
    if clips is not None and key in OFFICIAL_CLIPS and clips != OFFICIAL_CLIPS[key]:
        return f"{key}-{clips}clips"
    return key


def probe_name(protocol: dict[str, Any], path: Path) -> str:
    """The probe run name of a results.json: recorded in its ``protocol`` block; in files written before it was
    recorded, the name of the folder the runner wrote it to (``<model>/<task>/<run name>/results.json``), or in
    the oldest layout (no probe folder) the protocol name."""
    if "run" in protocol:
        return str(protocol["run"])
    name = str(protocol["name"])
    folder = path.parent.name
    return folder if folder == name or folder.startswith(f"{name}-") else name


def run_row(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The leaderboard row of one results.json (already schema-checked)."""
    try:
        model, task, score = data["model"], data["task"], data["score"]
        ci95 = score.get("ci95") or [None, None]
        return {
            "model": model["id"],
            "model_name": model["name"],
            "task": task_key(task["name"], task["folder"], task.get("clips")),
            "task_name": task["name"],
            "task_folder": task["folder"],
            "protocol": probe_name(data["protocol"], path),
            "metric": data["primary_score"],
            "higher_is_better": bool(data["higher_is_better"]),
            "mean": score["mean"],
            "std": score.get("std"),
            "ci95_low": ci95[0],
            "ci95_high": ci95[1],
            "n": score.get("n"),
            "date": data["date"],
            "weights_sha256": model.get("weights_sha256"),
            "path": str(path),
        }
    except (KeyError, TypeError, IndexError) as error:
        raise ValueError(f"{path}: results file lacks a required field ({error!r})") from None


def collect_runs(results_dir: str | Path, *, latest_only: bool = True) -> pd.DataFrame:
    """Every ``**/results.json`` under ``results_dir`` as one row each (:data:`RUN_COLUMNS`).

    With ``latest_only`` only the newest run of each (model, task, protocol) is kept. Rows are sorted by task, then
    protocol, then score (best first).
    """
    results_dir = Path(results_dir)
    paths = sorted(results_dir.rglob(RESULTS_FILENAME))
    if not paths:
        raise FileNotFoundError(f"{results_dir}: no {RESULTS_FILENAME} found (run `hear-atst eval` first)")
    runs = pd.DataFrame([run_row(read_results(path), path) for path in paths], columns=list(RUN_COLUMNS))
    runs["date"] = pd.to_datetime(runs["date"], utc=True, format="ISO8601")  # with or without fractions, offsets
    runs = runs.sort_values("date", kind="stable")
    if latest_only:
        runs = runs.groupby(["model", "task", "protocol"], sort=False).tail(1)
    return sort_by_score(runs).reset_index(drop=True)


def sort_by_score(table: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """Sort by task and protocol, best score first within each (lower first where lower is better)."""
    signed = table[value].where(table["higher_is_better"].astype(bool), -table[value])
    order = table.assign(_signed=signed).sort_values(
        ["task", "protocol", "_signed"], ascending=[True, True, False], kind="stable"
    )
    return order.drop(columns="_signed")


def full_size_task(task: str, published_tasks: set[str]) -> str | None:
    """The published task a run's task is a smaller (or otherwise resized) version of: the longest published key
    that ``task`` extends with ``-<mode>`` or ``-<n>clips`` (``esc50-small`` -> ``esc50``); None for a published task
    itself or a task with no published relative."""
    if task in published_tasks:
        return None
    relatives = [key for key in published_tasks if task.startswith(f"{key}-")]
    return max(relatives, key=len) if relatives else None


def published_for_runs(runs: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The published rows of the tasks that have runs, each labelled ``comparable`` or ``context``, plus, for a run
    task of another size than a published one, that full-size task's rows labelled ``full-size context`` (never
    ranked; ``for_task`` names the run task they are context for, empty on the other rows).

    ``comparable`` means some run of that task has the same protocol and metric; a comparable row's
    ``higher_is_better`` is taken from that run, so rankings use the task's own direction.
    """
    keys = runs.loc[:, ["task", "protocol", "metric", "higher_is_better"]].drop_duplicates(
        ["task", "protocol", "metric"]
    )
    rows = published[published["task"].isin(set(runs["task"]))]
    labelled = rows.merge(keys, on=["task", "protocol", "metric"], how="left", indicator=True)
    labelled["comparison"] = labelled["_merge"].map({"both": "comparable", "left_only": "context"}).astype(str)
    labelled = labelled.drop(columns="_merge").assign(for_task="")
    published_tasks = set(published["task"])
    resized = []
    for task in sorted(set(runs["task"])):
        full = full_size_task(task, published_tasks)
        if full is not None:
            resized.append(published[published["task"] == full].assign(comparison="full-size context", for_task=task))
    return pd.concat([labelled, *resized], ignore_index=True)
