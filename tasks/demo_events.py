"""``demo_events`` (``demo_events-v1-full``): the event variant of :mod:`tasks.demo`, built on demand.

40 four-second clips at 16 kHz, each holding 2-4 events of 0.2-1 s (``tone``, ``high_noise``, ``clicks``: one
tonal, one noise-band and one rhythmic sound, as in :mod:`tasks.demo`) at random onsets (events may overlap) over
background noise, split 60/20/20 by hear-preprocess's train/valid/test rule. Onsets and offsets are in the split
JSONs in ms, as in every HEAR event task.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.audio import write_wav_pcm16
from tasks.demo import SAMPLE_RATE, SNR_DB, SOUNDS, background, finish, place

SUMMARY = "synthetic sound events, 3 classes over noise, 2-4 events a clip, 60/20/20 split, 4 s; built here"
NEEDS = "nothing: synthesised on demand, no download"
SYNTHETIC = True

SEED = 20_261_208
CLIPS = 40
CLIP_SECONDS = 4.0
LABELS = ("tone", "high_noise", "clicks")
EVENT_SECONDS = (0.2, 1.0)

CONFIG: dict[str, Any] = {
    "task_name": "demo_events",
    "version": "v1",
    "embedding_type": "event",
    "prediction_type": "multilabel",
    "sample_duration": CLIP_SECONDS,
    "split_mode": "trainvaltest",
    "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
    "download_urls": [],
    "default_mode": "full",
    "modes": {
        "full": {
            "split_percentage": {"train": 60, "valid": 20, "test": 20},
            "max_task_duration_by_split": {"train": None, "valid": None, "test": None},
        },
    },
}

SOURCES: dict[str, tuple[Any, ...]] = {"full": ()}


def event_clip(index: int) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Clip ``index`` and its events ``(label, start ms, end ms)``, drawn from ``default_rng([SEED, index])``."""
    rng = np.random.default_rng([SEED, index])
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    mix = background(rng, n)
    events = []
    for _ in range(int(rng.integers(2, 5))):
        label = LABELS[int(rng.integers(len(LABELS)))]
        length = int(rng.uniform(*EVENT_SECONDS) * SAMPLE_RATE)
        start = int(rng.integers(0, n - length + 1))
        place(rng, SOUNDS[label](rng, length), mix, start, rng.uniform(*SNR_DB) + 6.0)
        events.append((label, start * 1000 / SAMPLE_RATE, (start + length) * 1000 / SAMPLE_RATE))
    return finish(rng, mix), events


def build_metadata(roots: Mapping[str, Path], config: Mapping[str, Any], workdir: Path) -> pd.DataFrame:
    """Synthesise every clip into ``workdir``: one row per event, all in ``train`` (valid and test are sampled)."""
    rows = []
    for index in range(CLIPS):
        path = workdir / "audio" / f"{index:03d}.wav"
        audio, events = event_clip(index)
        write_wav_pcm16(path, audio, SAMPLE_RATE)
        rows += [{"relpath": str(path), "label": label, "start": start, "end": end, "split": "train"}
                 for label, start, end in events]
    return pd.DataFrame(rows)
