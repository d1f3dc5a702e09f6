"""VoxCeleb1 speaker identification (``voxceleb1-v1.1-hear-atst-full``): 1251 speakers, official ``iden_split.txt``.

HEAR 2021 has no speaker-identification task, so this task is defined here, in HEAR's folder format:

- splits: ``iden_split.txt`` (``1`` train, ``2`` valid, ``3`` test) -> ``trainvaltest`` with all three splits given,
  so nothing is re-split; label = the speaker folder (``id10001``), scene/multiclass, metrics as HEAR's multiclass
  tasks (top1_acc first).
- clip length: ``sample_duration`` 8.2 s, the mean VoxCeleb1 utterance length and the ``unit_sec`` EVAR uses for
  VoxCeleb1 (hear_eval.md §4), so published linear-probe numbers are comparable; longer utterances keep their first
  8.2 s (HEAR's trim rule), shorter ones are zero-padded.
- stem = ``<speaker>_<video>_<utterance>`` (utterance names repeat across videos, so the default stem would clash).
- ``small`` = the same files cut/padded to 2 s (HEAR's small-mode clip length for long-clip tasks).

Source: a folder holding ``iden_split.txt`` and ``wav/<speaker>/<video>/<utt>.wav``: unzip ``vox1_dev_wav.zip`` and
``vox1_test_wav.zip`` in it (each unpacks to ``wav/``). No single official archive holds both the audio and the split
file, and the audio needs registration, so ``--source`` must be that folder; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.download import Source

SUMMARY = "VoxCeleb1 speaker identification, 1251 speakers, official iden_split, 8.2 s clips (hear-atst task)"
NEEDS = "a folder holding iden_split.txt and wav/ (vox1_dev_wav.zip + vox1_test_wav.zip unzipped; registration)"

SPLITS = {"1": "train", "2": "valid", "3": "test"}
REGISTRATION = (
    "VoxCeleb1 requires registration: request vox1_dev_wav.zip and vox1_test_wav.zip at "
    "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html, unzip both in one folder, where each makes wav/, and "
    "put https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt next to wav/; a dev archive sent as "
    "vox1_dev_wav_partaa..ad is those parts concatenated"
)

CONFIG: dict[str, Any] = {
    "task_name": "voxceleb1",
    "version": "v1.1-hear-atst",
    "embedding_type": "scene",
    "prediction_type": "multiclass",
    "split_mode": "trainvaltest",
    "sample_duration": 8.2,
    "evaluation": ["top1_acc", "mAP", "d_prime", "aucroc"],
    "download_urls": [
        {
            "split": "train",
            "name": "dev",
            "url": "https://thor.robots.ox.ac.uk/~vgg/data/voxceleb/vox1a/vox1_dev_wav.zip",
            "md5": "ae63e55b951748cc486645f532ba230b",
        },
        {
            "split": "test",
            "name": "test",
            "url": "https://thor.robots.ox.ac.uk/~vgg/data/voxceleb/vox1a/vox1_test_wav.zip",
            "md5": "185fdc63c3c739954633d50379a3d102",
        },
    ],
    "default_mode": "full",
    "modes": {
        "full": {"max_task_duration_by_split": {"train": None, "valid": None, "test": None}},
        "small": {"max_task_duration_by_split": {"train": None, "valid": None, "test": None}, "sample_duration": 2.0},
    },
}

_SOURCE = Source("vox1", None, ("vox1", "."), "iden_split.txt", registration=REGISTRATION)
SOURCES = {"full": (_SOURCE,), "small": (_SOURCE,)}


def filestem(relpath: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001_1zcIwhmdeo4_00001``."""
    path = Path(relpath)
    return f"{path.parent.parent.name}_{path.parent.name}_{path.stem}"


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """One row per line of ``iden_split.txt``."""
    root = roots["vox1"]
    split_file = root / "iden_split.txt"
    rows = []
    for number, line in enumerate(split_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in SPLITS or parts[1].count("/") != 2:
            raise ValueError(f"{split_file}:{number}: expected '<1|2|3> idNNNNN/<video>/<utt>.wav', got {line!r}")
        rows.append((str(root / "wav" / parts[1]), SPLITS[parts[0]], parts[1].split("/")[0]))
    return pd.DataFrame(rows, columns=["relpath", "split", "label"])
