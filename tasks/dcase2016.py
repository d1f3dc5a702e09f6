"""DCASE 2016 task 2 (``dcase2016_task2-hear2021-full``): office sound event detection, hear_preprocess.md §8.3.

The dev (18) and eval (54) 120 s mixtures are pooled and re-split 60/20/20 by file with the ``split_train_test_val``
seed (72 files -> 44/14/14); events come from ``annotation/*.txt`` (``onset<TAB>offset<TAB>label`` in seconds,
converted to ms), the audio path is the annotation path with ``annotation`` -> ``sound`` and ``.txt`` -> ``.wav``
(applied below the download's root only). Events starting at or after the clip end are dropped, later ends clipped.

``small`` is hear-atst's definition (HEAR's small zips are not described in its spec): the same sources and split
rule with 30 s clips, meant for the layout tool's ``--duration-sec 30`` prefixes (``--scenes all`` gives 44/14/14
files, dev only 10/4/4).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.download import Source

SUMMARY = "DCASE 2016 task 2 office sound events, 11 classes, dev+eval re-split 60/20/20, 120 s"
NEEDS = "dcase2016_task2_train_dev/ and dcase2016_task2_test_public/ (unpacked or the two .zip)"

CONFIG: dict[str, Any] = {
    "task_name": "dcase2016_task2",
    "version": "hear2021",
    "embedding_type": "event",
    "prediction_type": "multilabel",
    "split_mode": "trainvaltest",
    "sample_duration": 120.0,
    "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
    "download_urls": [
        {
            "split": "train",
            "name": "dev",
            "url": "https://archive.org/download/dcase2016_task2_train_dev/dcase2016_task2_train_dev.zip",
            "md5": "4e1b5e8887159193e8624dec801eb9e7",
        },
        {
            "split": "train",
            "name": "eval",
            "url": "https://archive.org/download/dcase2016_task2_test_public/dcase2016_task2_test_public.zip",
            "md5": "ac98768b39a08fc0c6c2ddd15a981dd7",
        },
    ],
    "default_mode": "full",
    "modes": {
        "full": {
            "split_percentage": {"valid": 20, "test": 20, "train": 60},
            "max_task_duration_by_split": {"train": None, "valid": None, "test": None},
        },
        "small": {
            "split_percentage": {"valid": 20, "test": 20, "train": 60},
            "max_task_duration_by_split": {"train": None, "valid": None, "test": None},
            "sample_duration": 30.0,
        },
    },
}

# Per download: the folder it unpacks to, and the folder inside that holds annotation/ and sound/.
SCENE_DIRS = {
    "dev": ("dcase2016_task2_train_dev", "dcase2016_task2_dev"),
    "eval": ("dcase2016_task2_test_public", "."),
}


def _source(download: Mapping[str, str]) -> Source:
    top, scenes = SCENE_DIRS[download["name"]]
    marker = str(Path(scenes) / "annotation")
    return Source(download["name"], f"{top}.zip", (top,), marker, url=download["url"], md5=download["md5"])


SOURCES = {mode: tuple(_source(d) for d in CONFIG["download_urls"]) for mode in ("full", "small")}


def read_annotation(path: Path) -> pd.DataFrame:
    """``start``/``end`` in ms (seconds x 1000, float64) and ``label`` of one annotation file."""
    try:
        table = pd.read_csv(path, sep="\t", header=None, names=["start", "end", "label"])
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise ValueError(f"{path}: unreadable annotation ({error})") from error
    if table.empty or table[["start", "end"]].isna().any().any() or table["label"].isna().any():
        raise ValueError(f"{path}: annotation lines must be 'onset<TAB>offset<TAB>label'")
    table["start"] *= 1000
    table["end"] *= 1000
    return table


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """One row per annotated event of every scene, all in the ``train`` split (eval first, as hear-preprocess)."""
    tables = []
    for name in ("eval", "dev"):
        scenes = roots[name] / SCENE_DIRS[name][1]
        annotations = sorted(scenes.glob("annotation/*.txt"))
        if not annotations:
            raise FileNotFoundError(f"{scenes / 'annotation'}: no annotation files")
        for path in annotations:
            relative = str(path.relative_to(scenes)).replace("annotation", "sound").replace(".txt", ".wav")
            tables.append(read_annotation(path).assign(relpath=str(scenes / relative), split="train"))
    return pd.concat(tables).reset_index(drop=True)
