"""ESC-50 (``esc50-v2.0.0-full``): 2000 clips x 5 s, 50 classes, the 5 official folds (hear_preprocess.md §8.1).

Reads ``ESC-50-master/meta/esc50.csv`` and ``ESC-50-master/audio/``; ``fold`` 1..5 -> ``fold00``..``fold04``
(``presplit_kfold``), label = ``category``, stem = the original file name. Rows whose audio is absent are dropped
in ``small`` mode (hear-preprocess's rule), which is how an ESC-10 subset in the ESC-50 layout prepares as
``esc50-v2.0.0-small``; ``full`` mode requires every listed clip. ``small`` = HEAR's small mode: 2 s clips.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.download import Source

SUMMARY = "ESC-50 environmental sounds, 50 classes, 5 official folds, 5 s clips"
NEEDS = "ESC-50-master/ (meta/esc50.csv, audio/) or ESC-50-master.zip"

CONFIG: dict[str, Any] = {
    "task_name": "esc50",
    "version": "v2.0.0",
    "embedding_type": "scene",
    "prediction_type": "multiclass",
    "sample_duration": 5,
    "split_mode": "presplit_kfold",
    "nfolds": 5,
    "evaluation": ["top1_acc", "mAP", "d_prime", "aucroc"],
    "download_urls": [
        {
            "split": "all_folds",
            "url": "https://github.com/karoldvl/ESC-50/archive/master.zip",
            "md5": "7771e4b9d86d0945acce719c7a59305a",
        },
    ],
    "default_mode": "full",
    "modes": {
        "full": {"max_task_duration_by_fold": None},
        "small": {
            "download_urls": [
                {
                    "split": "all_folds",
                    "url": "https://github.com/kmarufraj/s-task/raw/main/esc50-all_folds-small.zip",
                    "md5": "08bb240e414ce96529087aba52983b1c",
                }
            ],
            "max_task_duration_by_fold": None,
            "sample_duration": 2,
        },
    },
}


def _source(download: Mapping[str, str], archive: str) -> Source:
    return Source("all_folds", archive, ("ESC-50-master",), "meta/esc50.csv", url=download["url"], md5=download["md5"])


SOURCES = {
    "full": (_source(CONFIG["download_urls"][0], "ESC-50-master.zip"),),
    "small": (_source(CONFIG["modes"]["small"]["download_urls"][0], "esc50-all_folds-small.zip"),),
}


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """One row per clip of ``meta/esc50.csv``."""
    root = roots["all_folds"]
    table = pd.read_csv(root / "meta" / "esc50.csv")
    missing = {"filename", "fold", "category"} - set(table.columns)
    if missing:
        raise ValueError(f"{root / 'meta' / 'esc50.csv'}: missing columns {sorted(missing)}")
    return table.assign(
        relpath=[str(root / "audio" / name) for name in table["filename"]],
        split=[f"fold{fold - 1:02d}" for fold in table["fold"]],
        label=table["category"],
    )
