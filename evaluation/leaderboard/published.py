"""Published tables: one row per number, with the protocol and the source of each.

Every CSV in ``evaluation/leaderboard/published_tables/`` (package data, installed with hear-atst) has the
columns :data:`PUBLISHED_COLUMNS`:

- ``model``: the model as the source names it;
- ``task``: this project's task key (see :func:`evaluation.leaderboard.aggregate.task_key`), e.g. ``esc50``,
  ``speech_commands-5h``; tasks outside this project keep their source's name (``us8k``, ``audioset_20k``);
- ``metric``: the score, named as ``heareval`` names it where one applies (``top1_acc``, ``mAP``, ...);
- ``value``: on a **0–1 scale** (HEAR's scale): numbers a source prints in % are divided by 100;
- ``protocol``: ``hear`` (hear-eval-kit), ``evar-linear`` (EVAR linear evaluation), ``paper-linear``,
  ``paper-finetune``, ``paper-sed-finetune`` — a score is only ever *compared* with rows of its own protocol;
- ``source``: a citation or URL; ``note``: the source's own column name, ± values, and every UNVERIFIED caveat.

The HEAR leaderboard file is generated from ``hear_leaderboard.csv`` (the official ``docs/leaderboard.csv``) by
:func:`convert_hear_leaderboard`; regenerate it with ``python -m evaluation.leaderboard.published SRC DST``
(SRC: ``../shared/docs/hear_leaderboard.csv``, DST: ``evaluation/leaderboard/published_tables/hear_leaderboard.csv``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from hear_atst.atomic import write_text_atomic

PUBLISHED_COLUMNS = ("model", "task", "metric", "value", "protocol", "source", "note")

HEAR_SOURCE = "HEAR leaderboard, hearbenchmark.com docs/leaderboard.csv @3af3234"

# Leaderboard column -> (project task key, primary metric); metrics from hear_eval.md §2.4.
HEAR_COLUMNS: dict[str, tuple[str, str]] = {
    "Beehive": ("beehive_states", "aucroc"),
    "Beijing Opera": ("beijing_opera", "top1_acc"),
    "CREMA-D": ("tfds_crema_d", "top1_acc"),
    "DCASE 2016": ("dcase2016_task2", "event_onset_200ms_fms"),
    "ESC-50": ("esc50", "top1_acc"),
    "FSD50K": ("fsd50k", "mAP"),
    "GTZAN Genre": ("tfds_gtzan", "top1_acc"),
    "GTZAN Music/Speech": ("tfds_gtzan_music_speech", "top1_acc"),
    "Gunshot": ("gunshot_triangulation", "top1_acc"),
    "Libricount": ("libricount", "top1_acc"),
    "Maestro 5h": ("maestro-5h", "event_onset_50ms_fms"),
    "Mridangam Stroke": ("mridangam_stroke", "top1_acc"),
    "Mridangam Tonic": ("mridangam_tonic", "top1_acc"),
    "NSynth Pitch 50h": ("nsynth_pitch-50h", "pitch_acc"),
    "NSynth Pitch 5h": ("nsynth_pitch-5h", "pitch_acc"),
    "Speech commands 5h": ("speech_commands-5h", "top1_acc"),
    "Speech commands full": ("speech_commands-full", "top1_acc"),
    "Vocal Imitation": ("vocal_imitation", "mAP"),
    "VoxLingua107 top 10": ("vox_lingua_top10", "top1_acc"),
}

# Caveats the specs attach to whole leaderboard columns (hear_eval.md §2.4).
HEAR_COLUMN_NOTES = {
    "Beehive": "UNVERIFIED which of beehive_states_fold0/fold1 feeds this column (hear_eval.md §2.4)",
}
HEAR_META_COLUMNS = ("Model", "URL", "Submission Date")


def convert_hear_leaderboard(path: str | Path) -> pd.DataFrame:
    """The official leaderboard CSV (one row per model, one column per task) as one row per number.

    Empty cells (no submission for that task) give no row; every other cell is kept exactly as written.
    """
    path = Path(path)
    wide = pd.read_csv(path, dtype=str, keep_default_na=False)
    expected = set(HEAR_META_COLUMNS) | set(HEAR_COLUMNS)
    if set(wide.columns) != expected:
        raise ValueError(
            f"{path}: unexpected leaderboard columns; missing {sorted(expected - set(wide.columns))}, "
            f"unknown {sorted(set(wide.columns) - expected)}"
        )
    rows = []
    for _, entry in wide.iterrows():
        for column in wide.columns:
            if column in HEAR_META_COLUMNS or entry[column] == "":
                continue
            task, metric = HEAR_COLUMNS[column]
            notes = [f"leaderboard column '{column}'", f"submitted {entry['Submission Date']}, {entry['URL']}"]
            if column in HEAR_COLUMN_NOTES:
                notes.append(HEAR_COLUMN_NOTES[column])
            rows.append(
                {
                    "model": entry["Model"],
                    "task": task,
                    "metric": metric,
                    "value": float(entry[column]),
                    "protocol": "hear",
                    "source": HEAR_SOURCE,
                    "note": "; ".join(notes),
                }
            )
    return pd.DataFrame(rows, columns=list(PUBLISHED_COLUMNS))


def read_published_table(path: str | Path) -> pd.DataFrame:
    """One published CSV, checked: the exact columns, a finite 0–1 value and a protocol and source on every row."""
    path = Path(path)
    table = pd.read_csv(path, dtype={"value": float}, keep_default_na=False)
    if tuple(table.columns) != PUBLISHED_COLUMNS:
        raise ValueError(f"{path}: columns {list(table.columns)}, expected {list(PUBLISHED_COLUMNS)}")
    for index, row in table.iterrows():
        where = f"{path}: row {index + 2}"
        if not math.isfinite(row["value"]) or not 0.0 <= row["value"] <= 1.0:
            raise ValueError(f"{where}: value {row['value']} is not on the 0-1 scale")
        for column in ("model", "task", "metric", "protocol", "source"):
            if not str(row[column]).strip():
                raise ValueError(f"{where}: empty {column}")
    return table


def load_published(directory: str | Path) -> pd.DataFrame:
    """Every ``*.csv`` in ``directory`` concatenated, with a ``table`` column naming the file it came from."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"{directory}: no published tables (*.csv)")
    tables = [read_published_table(path).assign(table=path.stem) for path in paths]
    return pd.concat(tables, ignore_index=True)


def write_published_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write a published table atomically, with values printed exactly as parsed (``repr`` of the float)."""
    write_text_atomic(path, table.loc[:, list(PUBLISHED_COLUMNS)].to_csv(index=False))


def main(argv: list[str]) -> None:
    """``python -m evaluation.leaderboard.published SRC_CSV DST_CSV``: regenerate the HEAR table."""
    if len(argv) != 2:
        raise SystemExit("usage: python -m evaluation.leaderboard.published hear_leaderboard.csv OUT.csv")
    write_published_table(convert_hear_leaderboard(argv[0]), argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
