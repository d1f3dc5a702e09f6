"""Miniature HEAR task folders: every task shape of a suite (``hear2021``: the 19 leaderboard tasks) with the task's
exact ``task_metadata.json`` and label vocabulary size, filled with a few seconds of synthetic audio per clip.

They exercise what the shapes demand of the pipeline (event and scene embeddings, multiclass and multilabel,
train/valid/test and 3-, 5-, 7- and 10-fold rotations, every score the kit defines, NSynth's pitch labels) in
seconds, without the datasets. Clips are shorter than the task's ``sample_duration`` (which the metadata keeps as
HEAR wrote it); each class is a tone of its own frequency (a pitch task's label is its MIDI pitch), event tasks hold
tones where their events are, so a probe can learn them. The audio is generated, never stored in the repository:
``python -m evaluation.suite.miniatures OUT [--suite hear2021]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.suite.suites import Suite, SuiteTask, load_suite
from hear_atst.atomic import write_text_atomic
from tasks.audio import write_wav_pcm16

RATE = 16000
SCENE_SECONDS = 1.0
EVENT_SECONDS = 4.0
EVENTS_PER_CLIP = 3
PITCH_TASKS = ("nsynth_pitch", "maestro")  # labels are MIDI pitches 21..108
PITCH_RANGE = (21, 108)


def vocabulary(task: SuiteTask) -> list[Any]:
    """The task's labels in the kit's order (sorted; pitches as numbers)."""
    if task.metadata["task_name"] in PITCH_TASKS:
        return list(range(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    assert task.labels, f"{task.key}: a miniature needs the vocabulary size ('labels')"
    return [f"class{index:03d}" for index in range(task.labels)]


def splits(metadata: dict[str, Any]) -> list[str]:
    if metadata["split_mode"] == "trainvaltest":
        return ["train", "valid", "test"]
    return [f"fold{index:02d}" for index in range(metadata["nfolds"])]


def _tone(frequency: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.3 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))


def _frequency(label: Any, labels: list[Any]) -> float:
    """A class's tone: the MIDI pitch's frequency, else a frequency spread over 200 Hz .. 6 kHz by class index."""
    if isinstance(label, int):
        return 440.0 * 2 ** ((label - 69) / 12)
    return float(200.0 * (30.0 ** (labels.index(label) / max(1, len(labels) - 1))))


def _scene_split(labels: list[Any], count: int, multilabel: bool, offset: int) -> list[list[Any]]:
    """Each clip's labels: the classes in turn; a multilabel clip adds the class half the vocabulary away (every
    class appears when ``count`` is at least the vocabulary size, or half of it for multilabel)."""
    clips = []
    for index in range(count):
        first = labels[(offset + index) % len(labels)]
        second = labels[(offset + index + len(labels) // 2) % len(labels)]
        clips.append([first, second] if multilabel else [first])
    return clips


def _scene_clips_per_split(task: SuiteTask, labels: list[Any]) -> int:
    """Enough clips that every class is in every split (at least 8)."""
    multilabel = task.metadata["prediction_type"] == "multilabel"
    return max(8, len(labels) // (2 if multilabel else 1))


def write_miniature(task: SuiteTask, out_dir: Path, seed: int = 0) -> Path:
    """``<out_dir>/<folder>/`` with task_metadata.json, labelvocabulary.csv, the split files and 16 kHz audio."""
    rng = np.random.default_rng(seed)
    metadata = {**task.metadata, "tmp_dir": "_workdir", "splits": splits(task.metadata)}
    metadata["mode"] = metadata.pop("mode")
    folder = out_dir / task.folder
    labels = vocabulary(task)
    event = metadata["embedding_type"] == "event"
    multilabel = metadata["prediction_type"] == "multilabel"
    for split_index, split in enumerate(metadata["splits"]):
        entries: dict[str, Any] = {}
        if event:
            for clip in range(4):
                name = f"{split}_{clip:03d}.wav"
                audio, events = _event_clip(labels, rng)
                entries[name] = events
                write_wav_pcm16(folder / str(RATE) / split / name, audio.astype(np.float32), RATE)
        else:
            for clip, clip_labels in enumerate(_scene_split(labels, _scene_clips_per_split(task, labels),
                                                            multilabel, split_index)):
                name = f"{split}_{clip:03d}.wav"
                audio = sum(_tone(_frequency(label, labels), SCENE_SECONDS, rng) for label in clip_labels)
                audio = audio + 0.01 * rng.standard_normal(audio.shape)
                entries[name] = clip_labels
                write_wav_pcm16(folder / str(RATE) / split / name, audio.astype(np.float32), RATE)
        write_text_atomic(folder / f"{split}.json", json.dumps(entries, indent=1))
    vocabulary_csv = "idx,label\n" + "".join(f"{index},{label}\n" for index, label in enumerate(labels))
    write_text_atomic(folder / "labelvocabulary.csv", vocabulary_csv)
    write_text_atomic(folder / "task_metadata.json", json.dumps(metadata, indent=4))
    return folder


def _event_clip(labels: list[Any], rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A clip with a few tone events (each 0.4 .. 1 s) of classes drawn from the first few labels."""
    audio = 0.01 * rng.standard_normal(int(EVENT_SECONDS * RATE))
    events = []
    pool = labels[:: max(1, len(labels) // 6)][:6]
    for index in range(EVENTS_PER_CLIP):
        label = pool[int(rng.integers(len(pool)))]
        start = index * EVENT_SECONDS / EVENTS_PER_CLIP + float(rng.uniform(0.0, 0.2))
        end = start + float(rng.uniform(0.4, 1.0))
        first, last = int(start * RATE), int(end * RATE)
        audio[first:last] += _tone(_frequency(label, labels), (last - first) / RATE, rng)
        events.append({"label": label, "start": round(start * 1000, 3), "end": round(end * 1000, 3)})
    return audio, events


def write_suite_miniatures(suite: Suite, out_dir: Path, seed: int = 0) -> list[Path]:
    """A miniature of every task of ``suite`` under ``out_dir``."""
    return [write_miniature(task, out_dir, seed + index) for index, task in enumerate(suite.tasks.values())]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="Folder to write the task folders into.")
    parser.add_argument("--suite", default="hear2021", help="Suite name or .toml file (default: hear2021).")
    args = parser.parse_args(argv)
    for folder in write_suite_miniatures(load_suite(args.suite), args.out):
        print(folder)


if __name__ == "__main__":
    main()
