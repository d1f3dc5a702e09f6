"""A HEAR task folder (hear-preprocess output): load it, validate it, and give the audio at a model's rate.

Layout (``hear_eval.md`` §2)::

    <task>-<version>-<mode>/task_metadata.json  labelvocabulary.csv  <split>.json ...  <rate>/<split>/<file>.wav

Validation collects *every* problem (each with its path) and raises one :class:`TaskFolderError`; nothing is
skipped silently. Labels are compared as strings: hear-preprocess writes numeric labels as JSON integers (``8``)
while ``labelvocabulary.csv`` holds their text (``8``).

When the model's rate folder is missing (the Zenodo archives hold 48 kHz only), :meth:`TaskFolder.audio_dir`
resamples from the nearest original rate at or above it (else the highest) with libsoxr HQ
(:func:`tasks.audio.resample`, the resampler hear-preprocess uses through ffmpeg, without its dither) into
``<task>/<rate>/``, one atomic file at a time, and records the source rate and each source file's size and mtime in
``<task>/<rate>/.resampled.json``; an interrupted resampling resumes, and a finished one is rechecked against its
sources on every use: a clip whose source moved is resampled again.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from evaluation.results import write_json_atomic
from tasks.audio import AudioError, read_audio, resample, write_wav_pcm16
from tasks.hear_format import METADATA_FILENAME, PREPARE_PENDING, VOCABULARY_FILENAME

RESAMPLED_RECORD = ".resampled.json"
EMBEDDING_TYPES = ("scene", "event")
PREDICTION_TYPES = ("multiclass", "multilabel")
SPLIT_MODES = ("trainvaltest", "presplit_kfold", "new_split_kfold")
REQUIRED_METADATA = ("task_name", "embedding_type", "prediction_type", "split_mode", "splits", "evaluation")


class TaskFolderError(ValueError):
    """A task folder has problems; ``problems`` lists each one, naming its path."""

    def __init__(self, folder: Path, problems: list[str]) -> None:
        self.folder = folder
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"task folder {folder} has {len(problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class TaskFolder:
    """A validated task folder: its metadata, label vocabulary and per-split labels (scene) or events (event)."""

    path: Path
    metadata: dict[str, Any]
    label_vocabulary: list[str]
    labels: dict[str, dict[str, list[Any]]]  # split -> file name -> [label, ...] or [event, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def embedding_type(self) -> str:
        return str(self.metadata["embedding_type"])

    @property
    def splits(self) -> list[str]:
        return list(self.metadata["splits"])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskFolder:
        """Read and check metadata, vocabulary and split files (not the audio: see :meth:`check_audio`)."""
        path = Path(path)
        if not path.is_dir():
            raise TaskFolderError(path, [f"{path}: not a directory"])
        problems: list[str] = []
        metadata = _read_metadata(path / METADATA_FILENAME, problems)
        vocabulary = read_label_vocabulary(path / VOCABULARY_FILENAME, problems)
        labels: dict[str, dict[str, list[Any]]] = {}
        if metadata is not None:
            for split in metadata["splits"]:
                split_labels = _read_split(path / f"{split}.json", metadata, set(vocabulary or []), problems)
                if split_labels is not None:
                    labels[split] = split_labels
            _check_disjoint(path, labels, problems)
        if not _rate_dirs(path):
            problems.append(f"{path}: no audio folder named by a sample rate (e.g. {path / '16000'})")
        if (path / PREPARE_PENDING).is_file():
            problems.append(f"{path / PREPARE_PENDING}: a `hear-atst prepare` run of this folder did not finish (its "
                            "audio may be incomplete); run the same command again to finish it")
        if problems:
            raise TaskFolderError(path, problems)
        assert metadata is not None and vocabulary is not None
        return cls(path, metadata, vocabulary, labels)

    def sample_rates(self) -> list[int]:
        """The rates whose audio folder is complete (original, or a finished resampling)."""
        return folder_sample_rates(self.path)

    def original_rates(self) -> list[int]:
        """The rates hear-preprocess wrote (not resampled here)."""
        return sorted(rate for rate, record in _rate_dirs(self.path).items() if record is None)

    def check_audio(self, rate: int) -> dict[str, dict[str, int]]:
        """Check every listed file of every split at ``rate``: present, readable, non-empty, mono, at ``rate``,
        finite; and no unlisted wav. Returns split -> file -> number of samples; raises listing all problems."""
        problems: list[str] = []
        lengths: dict[str, dict[str, int]] = {}
        for split, split_labels in self.labels.items():
            directory = self.path / str(rate) / split
            if not directory.is_dir():
                problems.append(f"{directory}: audio folder of split {split!r} at {rate} Hz is missing")
                continue
            lengths[split] = {}
            for filename in split_labels:
                n_samples = check_clip(directory / filename, rate, problems)
                if n_samples is not None:
                    lengths[split][filename] = n_samples
            for extra in sorted(set(p.name for p in directory.glob("*.wav")) - set(split_labels)):
                problems.append(f"{directory / extra}: wav file not listed in {self.path / (split + '.json')}")
        if problems:
            raise TaskFolderError(self.path, problems)
        return lengths

    def audio_dir(self, rate: int, progress: bool = False, note: Callable[[str], None] | None = None) -> Path:
        """``<task>/<rate>``; when hear-preprocess did not write that rate, resample it first from the nearest
        original rate at or above it (so no bandwidth is lost), else from the highest (validating the source audio,
        then one atomic file at a time, resuming an interrupted run). A finished resampling is rechecked against
        its sources (size and mtime): clips whose source changed are resampled again (``note`` hears how many)."""
        target = self.path / str(rate)
        record = _rate_dirs(self.path).get(rate)
        if target.is_dir() and record is None:
            return target
        if record is not None and record["complete"]:
            stale = self._stale_resampled(target, record)
            if not stale:
                return target
            if note:
                note(f"{len(stale)} clip(s) of {target} were resampled from source files that changed since (or "
                     "from unrecorded ones): resampling them again")
            for clip in stale:
                (target / clip).unlink(missing_ok=True)
        sources = self.original_rates()
        if not sources:
            raise TaskFolderError(self.path, [f"{self.path}: no original audio folder to resample {rate} Hz from"])
        source = min((r for r in sources if r >= rate), default=max(sources))
        self.check_audio(source)
        record_path = target / RESAMPLED_RECORD
        info = {"source_rate": source, "rate": rate, "resampler": "soxr HQ (tasks.audio.resample)", "complete": False}
        try:
            write_json_atomic(record_path, info)
        except OSError as error:
            raise OSError(f"{target}: cannot write resampled audio there ({error})") from None
        jobs = self._clips()
        for clip in track(jobs, description=f"resample {source}->{rate} Hz", disable=not progress):
            out = target / clip
            if not out.exists():
                audio, _ = read_audio(self.path / str(source) / clip)
                write_wav_pcm16(out, resample(audio, source, rate), rate)
        sources_stat = {clip: _size_and_mtime(self.path / str(source) / clip) for clip in jobs}
        write_json_atomic(record_path, {**info, "complete": True, "sources": sources_stat})
        return target

    def _clips(self) -> list[str]:
        return [f"{split}/{name}" for split, split_labels in self.labels.items() for name in split_labels]

    def _stale_resampled(self, target: Path, record: dict[str, Any]) -> list[str]:
        """Clips of a finished resampling whose source file's size or mtime differs from the record's (all of them
        when the record lists no sources), or whose output is missing."""
        recorded = record.get("sources") or {}
        source_dir = self.path / str(record.get("source_rate"))
        return [clip for clip in self._clips()
                if recorded.get(clip) != _size_and_mtime(source_dir / clip) or not (target / clip).is_file()]


def _size_and_mtime(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def read_task_metadata(folder: Path) -> dict[str, Any]:
    """The checked ``task_metadata.json`` of ``folder``; raises :class:`TaskFolderError` naming each problem."""
    problems: list[str] = []
    metadata = _read_metadata(folder / METADATA_FILENAME, problems)
    if metadata is None:
        raise TaskFolderError(folder, problems)
    return metadata


def folder_sample_rates(folder: Path) -> list[int]:
    """The rates whose audio folder in ``folder`` is complete (original, or a finished resampling)."""
    return sorted(rate for rate, record in _rate_dirs(folder).items() if record is None or record["complete"])


def _rate_dirs(path: Path) -> dict[int, dict[str, Any] | None]:
    """Rate folders -> their resampling record (None for folders hear-preprocess wrote)."""
    found: dict[int, dict[str, Any] | None] = {}
    for child in path.iterdir():
        if child.is_dir() and child.name.isdigit():
            record = child / RESAMPLED_RECORD
            try:
                found[int(child.name)] = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise TaskFolderError(path, [f"{record}: unreadable resampling record ({error}); remove {child} "
                                             "to resample it again"]) from None
    return found


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        problems.append(f"{path}: missing")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{path}: not readable JSON ({error})")
        return None


def _read_metadata(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """``task_metadata.json``; None (with problems) if a field the runner relies on is missing or invalid."""
    metadata = _read_json(path, problems)
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        problems.append(f"{path}: expected a JSON object, got {type(metadata).__name__}")
        return None
    before = len(problems)
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        problems.append(f"{path}: missing key(s) {', '.join(missing)}")
    for key, allowed in (("embedding_type", EMBEDDING_TYPES), ("prediction_type", PREDICTION_TYPES),
                         ("split_mode", SPLIT_MODES)):
        if key in metadata and metadata[key] not in allowed:
            problems.append(f"{path}: {key} is {metadata[key]!r}, expected one of {', '.join(allowed)}")
    splits = metadata.get("splits")
    if "splits" in metadata and (not isinstance(splits, list) or not splits
                                 or not all(isinstance(s, str) for s in splits)):
        problems.append(f"{path}: splits must be a non-empty list of split names, got {splits!r}")
    elif metadata.get("split_mode") == "trainvaltest" and sorted(splits or []) != ["test", "train", "valid"]:
        problems.append(f"{path}: split_mode trainvaltest needs splits train, valid, test; got {splits!r}")
    evaluation = metadata.get("evaluation")
    if "evaluation" in metadata and (not isinstance(evaluation, list) or not evaluation):
        problems.append(f"{path}: evaluation must be a non-empty list of score names, got {evaluation!r}")
    duration = metadata.get("sample_duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)
                                 or not duration > 0):
        problems.append(f"{path}: sample_duration must be a positive number of seconds or null, got {duration!r}")
    return metadata if len(problems) == before else None


def read_label_vocabulary(path: Path, problems: list[str]) -> list[str] | None:
    """``labelvocabulary.csv``: header ``idx,label``, indices 0..N-1 in order, unique labels (as text).
    Problems are appended to ``problems`` (None is returned when the file cannot be used)."""
    if not path.is_file():
        problems.append(f"{path}: missing")
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != ["idx", "label"]:
        problems.append(f"{path}: header must be 'idx,label', got {rows[0] if rows else 'an empty file'}")
        return None
    labels: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or row[0] != str(len(labels)):
            problems.append(f"{path}:{line}: expected '{len(labels)},<label>', got {','.join(row)!r}")
            return None
        labels.append(row[1])
    if not labels:
        problems.append(f"{path}: no labels")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        problems.append(f"{path}: duplicate label(s) {', '.join(duplicates)}")
    return labels


def _read_split(path: Path, metadata: dict[str, Any], vocabulary: set[str],
                problems: list[str]) -> dict[str, list[Any]] | None:
    """``<split>.json``: scene ``{file: [label, ...]}`` or event ``{file: [{label, start, end}, ...]}``."""
    data = _read_json(path, problems)
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a JSON object {{file name: labels}}, got {type(data).__name__}")
        return None
    if not data:
        problems.append(f"{path}: lists no files")
    for filename, entries in data.items():
        where = f"{path} [{filename}]"
        if not filename.endswith(".wav") or "/" in filename:
            problems.append(f"{where}: keys must be wav file names")
        if not isinstance(entries, list):
            problems.append(f"{where}: expected a list, got {type(entries).__name__}")
        elif metadata["embedding_type"] == "event":
            for event in entries:
                _check_event(event, vocabulary, where, problems)
        else:
            if metadata["prediction_type"] == "multiclass" and len(entries) != 1:
                problems.append(f"{where}: a multiclass clip needs exactly one label, got {entries!r}")
            for label in entries:
                _check_label(label, vocabulary, where, problems)
    return data


def _check_disjoint(path: Path, labels: dict[str, dict[str, list[Any]]], problems: list[str]) -> None:
    """A file name in two split files would leak test clips into training (hear-preprocess forbids it)."""
    splits = list(labels)
    for i, first in enumerate(splits):
        for second in splits[i + 1:]:
            shared = sorted(labels[first].keys() & labels[second].keys())
            if shared:
                shown = ", ".join(shared[:5]) + (f", ... ({len(shared)} in all)" if len(shared) > 5 else "")
                problems.append(f"{path / (first + '.json')} and {path / (second + '.json')} both list {shown}")


def _check_label(label: Any, vocabulary: set[str], where: str, problems: list[str]) -> None:
    if isinstance(label, bool) or not isinstance(label, str | int) or (vocabulary and str(label) not in vocabulary):
        problems.append(f"{where}: label {label!r} is not in the label vocabulary")


def _check_event(event: Any, vocabulary: set[str], where: str, problems: list[str]) -> None:
    if not isinstance(event, dict) or not {"label", "start", "end"} <= set(event):
        problems.append(f"{where}: an event must be {{label, start, end}}, got {event!r}")
        return
    _check_label(event["label"], vocabulary, where, problems)
    times = (event["start"], event["end"])
    if not all(isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in times):
        problems.append(f"{where}: event times must be finite numbers of ms, got {event!r}")
    elif event["start"] < 0 or event["end"] < event["start"]:
        problems.append(f"{where}: event needs 0 <= start <= end, got {event!r}")


def check_clip(path: Path, rate: int, problems: list[str]) -> int | None:
    """Decode one clip; its sample count, or None after recording its problem."""
    try:
        audio, sr = read_audio(path)
    except FileNotFoundError:
        problems.append(f"{path}: missing (listed in the split file)")
        return None
    except AudioError as error:
        problems.append(str(error))
        return None
    if sr != rate:
        problems.append(f"{path}: sample rate {sr} Hz in the {rate} Hz folder")
    if audio.ndim != 1:
        problems.append(f"{path}: {audio.shape[0]} channels, expected mono")
    if not np.isfinite(audio).all():
        problems.append(f"{path}: holds NaN or infinite samples")
    return int(audio.shape[-1])

