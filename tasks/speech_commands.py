"""Speech Commands v0.02 (``speech_commands-v0.0.2-5h`` / ``-full`` / ``-small``), hear_preprocess.md §8.2.

12 labels: the 10 command words, ``_silence_`` and ``_unknown_`` (every other word folder, and the test archive's
``_unknown_`` folder). ``_silence_`` clips are cut from ``_background_noise_/*.wav`` into 1 s windows with a 0.5 s
hop (starts ``0, sr/2, ...`` while ``start < len - sr``), written to the work folder as
``_silence_/<noise>-<start>.wav``. Splits are the official ones: test = the test archive, valid =
``validation_list.txt`` + every ``running_tap`` slice, train = the remaining word clips + the other noises' slices.
Stem = ``<folder>_<file stem>``; split key = stem without ``_nohash_...`` (the speaker). ``5h`` keeps 16000 train and
2000 valid clips (seeded, §6.2); ``small`` = HEAR's small archives (rows whose audio is absent are dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.audio import read_audio, write_wav_pcm16
from tasks.download import Source
from tasks.hear_format import TRAIN_PERCENTAGE, TRAINVAL_PERCENTAGE, VALIDATION_PERCENTAGE

SUMMARY = "Speech Commands v0.02 keyword spotting, 12 labels, official splits, 1 s clips"
NEEDS = "speech_commands_v0.02/ and speech_commands_test_set_v0.02/ (unpacked or the two .tar.gz; -small for small)"

WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN, BACKGROUND = "_silence_", "_unknown_", "_background_noise_"
VALID_NOISE = "running_tap"

CONFIG: dict[str, Any] = {
    "task_name": "speech_commands",
    "version": "v0.0.2",
    "embedding_type": "scene",
    "prediction_type": "multiclass",
    "split_mode": "trainvaltest",
    "sample_duration": 1.0,
    "evaluation": ["top1_acc"],
    "download_urls": [
        {
            "split": "train",
            "url": "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
            "md5": "6b74f3901214cb2c2934e98196829835",
        },
        {
            "split": "test",
            "url": "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
            "md5": "854c580ee90bff80c516491c84544e32",
        },
    ],
    "default_mode": "5h",
    "modes": {
        "5h": {
            "max_task_duration_by_split": {
                "train": 3600 * 5 * TRAIN_PERCENTAGE / TRAINVAL_PERCENTAGE,
                "valid": 3600 * 5 * VALIDATION_PERCENTAGE / TRAINVAL_PERCENTAGE,
                "test": None,
            }
        },
        "full": {"max_task_duration_by_split": {"test": None, "train": None, "valid": None}},
        "small": {
            "download_urls": [
                {
                    "split": "train",
                    "url": "https://github.com/neuralaudio/hear2021-open-tasks-downsampled/raw/main/"
                    "speech_commands_v0.02-small.zip",
                    "md5": "455123a88b8410d1f955c77ad331524f",
                },
                {
                    "split": "test",
                    "url": "https://github.com/neuralaudio/hear2021-open-tasks-downsampled/raw/main/"
                    "speech_commands_test_set_v0.02-small.zip",
                    "md5": "26d08374a7abd13ca2f4a4b8424f41d0",
                },
            ],
            "max_task_duration_by_split": {"train": None, "valid": None, "test": None},
        },
    },
}


def _sources(downloads: list[dict[str, str]], suffix: str, ext: str) -> tuple[Source, ...]:
    train, test = downloads
    return (
        Source("train", f"speech_commands_v0.02{suffix}{ext}", (f"speech_commands_v0.02{suffix}",),
               "validation_list.txt", url=train["url"], md5=train["md5"], flat=not suffix),
        Source("test", f"speech_commands_test_set_v0.02{suffix}{ext}", (f"speech_commands_test_set_v0.02{suffix}",),
               "yes", url=test["url"], md5=test["md5"], flat=not suffix),
    )


SOURCES = {
    "5h": _sources(CONFIG["download_urls"], "", ".tar.gz"),
    "full": _sources(CONFIG["download_urls"], "", ".tar.gz"),
    "small": _sources(CONFIG["modes"]["small"]["download_urls"], "-small", ".zip"),
}


def filestem(relpath: str) -> str:
    """``<parent folder>_<file stem>``, e.g. ``yes_0a7c2a8d_nohash_0`` or ``_silence__running_tap-8000``."""
    path = Path(relpath)
    return f"{path.parent.name}_{path.stem}"


def split_key(meta: pd.DataFrame) -> pd.Series:
    """The speaker: the stem without ``_nohash_...``."""
    return meta["unique_filestem"].map(lambda stem: re.sub(r"_nohash_.*$", "", stem))


def label_of(relpath: str) -> str:
    folder = Path(relpath).parent.name
    return folder if folder in WORDS or folder == SILENCE else UNKNOWN


def make_silence(train_root: Path, workdir: Path) -> list[Path]:
    """Cut every background noise into 1 s slices with a 0.5 s hop (existing slices are kept)."""
    noises = sorted(train_root.glob(f"{BACKGROUND}/*.wav"))
    if not noises:
        raise FileNotFoundError(f"{train_root / BACKGROUND}: no background noise wavs to cut _silence_ from")
    slices = []
    for noise in noises:
        audio, sr = read_audio(noise)
        if audio.ndim != 1:
            raise ValueError(f"{noise}: background noise must be mono")
        for start in range(0, len(audio) - sr, sr // 2):
            path = workdir / SILENCE / f"{noise.stem}-{start}{noise.suffix}"
            if not path.exists():
                write_wav_pcm16(path, audio[start:start + sr], sr)
            slices.append(path)
    return slices


def _list(path: Path) -> list[str]:
    return path.read_text().strip().splitlines()


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """Test archive + validation list + the rest of the train archive, with the silence slices."""
    train_root, test_root = roots["train"], roots["test"]
    silence = make_silence(train_root, workdir)
    valid_silence = [p for p in silence if p.name.startswith(VALID_NOISE)]
    valid_list = _list(train_root / "validation_list.txt")
    test_list = _list(train_root / "testing_list.txt")
    words = {str(p.relative_to(train_root)) for p in train_root.glob("[!_]*/*.wav")}
    train = sorted(words - set(test_list) - set(valid_list))
    rows = (
        [(str(p), "test") for p in sorted(test_root.glob("*/*.wav"))]
        + [(str(train_root / p), "valid") for p in valid_list]
        + [(str(p), "valid") for p in valid_silence]
        + [(str(train_root / p), "train") for p in train]
        + [(str(p), "train") for p in silence if p not in set(valid_silence)]
    )
    meta = pd.DataFrame(rows, columns=["relpath", "split"])
    return meta.assign(label=meta["relpath"].map(label_of))
