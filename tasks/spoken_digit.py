"""Free Spoken Digit Dataset as HEAR's ``spoken_digit`` task (``spoken_digit-1.0.9-full``), hear_preprocess.md §8.4.

hear-preprocess reads FSDD through TFDS ``spoken_digit`` 1.0.9, i.e. the 2500 recordings of FSDD tag v1.0.9 (speakers
george, jackson, nicolas, theo, yweweler; later FSDD releases add ``lucas``, whose files are ignored here). TFDS
names each clip ``tfds_id_spoken-digit-train-tfrecord-00000-of-00001-<i>`` where ``i`` is the rank of the FSDD
name ``key`` (file name without ``.wav``) in ascending ``int(md5(b"train" + key))`` order; label = the digit (an int
after hear-preprocess's CSV round trip). 5 folds re-split by file (``new_split_kfold``). Audio is the correct
16-bit FSDD audio (hear-preprocess >= 2021.1.0; 2021.0.x wrote ``x >> 16``).

Config = hear-preprocess 2021.1.1 (``sample_duration`` 0.56 s). :data:`CONFIG_2021_0_6` is the release that made the
public reference tarball (1.0 s, ``neuralaudio`` URL); preparing with it reproduces that tarball's JSON files byte for
byte. ``small`` = the 100 recordings of HEAR's ``spoken_digit-small.zip`` (:data:`SMALL_SUBSET`, named by FSDD file),
taken from a full FSDD source.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.download import Source

SUMMARY = "Free Spoken Digit Dataset (HEAR spoken_digit), 10 digits, 5 folds, 0.56 s clips"
NEEDS = "FSDD recordings/ (free-spoken-digit-dataset-1.0.9/ or a later FSDD checkout) or v1.0.9.tar.gz"

TFDS_SPEAKERS = ("george", "jackson", "nicolas", "theo", "yweweler")  # FSDD v1.0.9
TFDS_ID_PREFIX = "tfds_id_spoken-digit-train-tfrecord-00000-of-00001-"
SMALL_URL = "https://github.com/hearbenchmark/hear2021-open-tasks-downsampled/raw/main/spoken_digit-small.zip"
SMALL_MD5 = "69d50c15805ea11beb12d9a4db1d4c2a"

CONFIG: dict[str, Any] = {
    "task_name": "spoken_digit",
    "version": "1.0.9",
    "embedding_type": "scene",
    "prediction_type": "multiclass",
    "split_mode": "new_split_kfold",
    "nfolds": 5,
    "sample_duration": 0.56,
    "evaluation": ["top1_acc"],
    "tfds_task_name": "spoken_digit",
    "tfds_task_version": "1.0.9",
    "extract_splits": ["train"],
    "default_mode": "full",
    "modes": {
        "full": {"max_task_duration_by_fold": None},
        "small": {
            "download_urls": [{"split": "train", "url": SMALL_URL, "md5": SMALL_MD5}],
            "max_task_duration_by_fold": None,
        },
    },
}

CONFIG_2021_0_6: dict[str, Any] = copy.deepcopy(CONFIG)
CONFIG_2021_0_6["sample_duration"] = 1.0
CONFIG_2021_0_6["modes"]["small"]["download_urls"][0]["url"] = SMALL_URL.replace("hearbenchmark", "neuralaudio")

_SOURCE = Source(
    "train",
    "free-spoken-digit-dataset-1.0.9.tar.gz",
    ("free-spoken-digit-dataset-1.0.9", "."),
    "recordings",
    url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/v1.0.9.tar.gz",
    sha256="8bc44cde129d505cbbb6b365c09f80c663f2aa77578afc634e6141a2f87100c0",
)
SOURCES = {"full": (_SOURCE,), "small": (_SOURCE,)}

# The FSDD recordings in HEAR's spoken_digit-small.zip (md5 69d50c15...), identified from the reference tarball.
SMALL_SUBSET = frozenset(
    [
        "0_george_23", "0_nicolas_24", "0_nicolas_48", "0_theo_43", "0_theo_45", "0_yweweler_30", "1_george_18",
        "1_george_40", "1_george_5", "1_george_6", "1_george_7", "1_jackson_20", "1_jackson_25", "1_jackson_33",
        "1_jackson_39", "1_jackson_45", "1_nicolas_25", "1_theo_0", "1_theo_16", "1_theo_36", "1_theo_48",
        "2_george_38", "2_george_49", "2_jackson_46", "2_theo_10", "2_theo_40", "2_yweweler_33", "3_george_25",
        "3_george_36", "3_george_8", "3_jackson_22", "3_nicolas_18", "3_nicolas_9", "3_theo_32", "3_yweweler_17",
        "3_yweweler_27", "4_george_38", "4_jackson_0", "4_jackson_15", "4_jackson_19", "4_jackson_40", "4_jackson_47",
        "4_nicolas_18", "4_nicolas_49", "4_yweweler_1", "4_yweweler_14", "4_yweweler_23", "4_yweweler_5",
        "4_yweweler_6", "4_yweweler_8", "5_george_29", "5_jackson_38", "5_nicolas_27", "5_nicolas_47", "5_nicolas_7",
        "5_theo_32", "5_yweweler_20", "5_yweweler_23", "5_yweweler_34", "6_george_13", "6_george_42", "6_jackson_48",
        "6_nicolas_38", "6_theo_16", "6_theo_18", "6_theo_3", "7_george_0", "7_george_41", "7_jackson_1",
        "7_jackson_8", "7_nicolas_14", "7_nicolas_40", "7_theo_13", "7_theo_48", "7_yweweler_28", "8_george_41",
        "8_george_46", "8_george_48", "8_jackson_10", "8_jackson_17", "8_jackson_26", "8_jackson_38", "8_jackson_8",
        "8_nicolas_31", "8_theo_18", "8_theo_49", "8_yweweler_34", "9_george_14", "9_george_17", "9_george_26",
        "9_george_4", "9_jackson_19", "9_jackson_28", "9_jackson_6", "9_nicolas_37", "9_nicolas_40", "9_theo_28",
        "9_theo_48", "9_yweweler_14", "9_yweweler_30",
    ]
)

_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)$")


def tfds_order(keys: list[str]) -> list[str]:
    """FSDD names in TFDS example order: ascending ``int(md5(b"train" + key).hexdigest(), 16)``."""
    return sorted(keys, key=lambda key: int(hashlib.md5(b"train" + key.encode()).hexdigest(), 16))


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """One row per FSDD v1.0.9 recording (the small subset in small mode), with its TFDS stem."""
    recordings = roots["train"] / "recordings"
    keys = []
    for path in sorted(recordings.glob("*.wav")):
        match = _NAME.match(path.stem)
        if match is None:
            raise ValueError(f"{path}: not an FSDD name <digit>_<speaker>_<index>.wav")
        if match.group(2) in TFDS_SPEAKERS:
            keys.append(path.stem)
    if len(keys) != 50 * 10 * len(TFDS_SPEAKERS):
        raise FileNotFoundError(f"{recordings}: {len(keys)} recordings of {', '.join(TFDS_SPEAKERS)}; FSDD has 2500")
    rows = [
        (str(recordings / f"{key}.wav"), "train", key.split("_")[0], f"{TFDS_ID_PREFIX}{index}")
        for index, key in enumerate(tfds_order(keys))
        if config["mode"] != "small" or key in SMALL_SUBSET
    ]
    return pd.DataFrame(rows, columns=["relpath", "split", "label", "unique_filestem"])
