"""Which audio bytes each cached embedding was made from: ``audio-manifest.jsonl`` in an embeddings folder.

One JSON line per clip, ``{"clip": "<split>/<file>", "size", "mtime_ns", "sha256"}``: the size and modification
time of the file when it was read, and the SHA-256 of the exact bytes that were decoded and embedded. Lines are
appended (and fsynced) batch by batch while embedding, so a killed run keeps what it finished; the last line of a
clip wins; a torn last line (a crash mid-append) is ignored. A finished folder rewrites it sorted, one line a clip.

A rerun checks every clip cheaply (``stat``: size and mtime); only a clip whose size or mtime moved is hashed
again, and only one whose bytes differ is embedded again (:func:`recheck`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hear_atst.atomic import write_text_atomic

MANIFEST_FILENAME = "audio-manifest.jsonl"


@dataclass(frozen=True)
class ClipRecord:
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, stat: os.stat_result, data: bytes) -> ClipRecord:
        """The record of bytes ``data`` read from a file whose ``stat`` (taken before reading) is given."""
        return cls(stat.st_size, stat.st_mtime_ns, hashlib.sha256(data).hexdigest())


@dataclass
class Recheck:
    """The outcome of checking clips against their records."""

    changed: set[str] = field(default_factory=set)  # bytes differ from those embedded (or the file is gone)
    new: set[str] = field(default_factory=set)  # no record: never embedded
    touched: dict[str, ClipRecord] = field(default_factory=dict)  # size/mtime moved, bytes equal: refreshed record


def read_manifest(folder: Path) -> dict[str, ClipRecord]:
    """The latest record of every clip in ``folder``'s manifest (empty when there is none)."""
    path = folder / MANIFEST_FILENAME
    if not path.is_file():
        return {}
    records: dict[str, ClipRecord] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            records[entry["clip"]] = ClipRecord(int(entry["size"]), int(entry["mtime_ns"]), str(entry["sha256"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash: that clip counts as not embedded
    return records


def _lines(records: Iterable[tuple[str, ClipRecord]]) -> str:
    return "".join(json.dumps({"clip": clip, **asdict(record)}) + "\n" for clip, record in records)


def append_records(folder: Path, records: dict[str, ClipRecord]) -> None:
    """Append records to ``folder``'s manifest and flush them to disk."""
    with open(folder / MANIFEST_FILENAME, "a", encoding="utf-8") as handle:
        handle.write(_lines(records.items()))
        handle.flush()
        os.fsync(handle.fileno())


def write_manifest(folder: Path, records: dict[str, ClipRecord]) -> None:
    """Replace ``folder``'s manifest atomically by ``records``, one line a clip, sorted."""
    write_text_atomic(folder / MANIFEST_FILENAME, _lines(sorted(records.items())))


def manifest_sha256(records: dict[str, ClipRecord]) -> str:
    """SHA-256 of the audio's content alone: ``<split>/<file> <sha256>`` lines, sorted (sizes and times left out)."""
    text = "".join(f"{clip} {record.sha256}\n" for clip, record in sorted(records.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def recheck(records: dict[str, ClipRecord], audio_dir: Path, clips: Iterable[str]) -> Recheck:
    """Compare ``clips`` (``<split>/<file>`` under ``audio_dir``) with their records: stat each; hash only those
    whose size or mtime moved."""
    outcome = Recheck()
    for clip in clips:
        record = records.get(clip)
        if record is None:
            outcome.new.add(clip)
            continue
        path = audio_dir / clip
        try:
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) == (record.size, record.mtime_ns):
                continue
            now = ClipRecord.of(stat, path.read_bytes())
        except OSError:
            outcome.changed.add(clip)  # gone or unreadable: the audio check names the problem
            continue
        if now.sha256 == record.sha256:
            outcome.touched[clip] = now
        else:
            outcome.changed.add(clip)
    return outcome
