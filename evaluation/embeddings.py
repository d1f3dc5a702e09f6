"""The embedding stage: a task folder in, the HEAR kit's embedding layout out (``hear_eval.md`` §3.1), cached.

Layout of ``<embeddings_dir>/<module><-k=v options>/<task folder>/``, as ``heareval.embeddings.runner`` writes it:

- copies of ``task_metadata.json``, ``labelvocabulary.csv`` and every ``<split>.json``;
- per clip ``<split>/<file>.embedding.npy`` (scene: ``[D]``; event: ``[T, D]``) and ``<file>.target-labels.json``
  (scene: the clip's labels; event: one label list per timestamp, :func:`evaluation.data.frame_labels`), plus
  ``<file>.timestamps.json`` (ms) for event tasks;
- per split the raw float32 memmap ``<split>.embeddings.npy`` (no ``.npy`` header, as the kit writes it) with rows
  in the kit's order (clips shuffled once by one ``random.Random(0)`` over the splits in order),
  ``<split>.embedding-dimensions.json`` ``[rows, D]``, ``<split>.target-labels.pkl`` and, for event tasks,
  ``<split>.filename-timestamps.json`` ``[[slug, t_ms], ...]``;
- ``clip-durations.json`` (``{"<split>/<file>": seconds}``, each clip's audio as embedded: PSDS's durations);
- ``profile.embeddings.json``, ``audio-manifest.jsonl`` (:mod:`evaluation.audio_manifest`: size, mtime and
  SHA-256 of the audio bytes each clip was embedded from) and the ``.done.embeddings`` marker.

Differences from the kit, on purpose: the clip list is sorted before the shuffle (the kit shuffles a directory
listing, whose order depends on the file system), so the row order is reproducible; the event slug is
``<split>/<file>`` relative to the task folder (the kit writes the path it was given; readers keep only the file
name); the weights file's short sha256, a non-default precision and a non-CPU device class join the model options
in the folder name; the frame-label rule is ``start <= t < end`` (the kit's interval tree uses ``end + 0.0001``,
:func:`evaluation.data.frame_labels`).

Cache identity (``embedding-config.json``): module, options, precision, weights hash, device class, the model's
source (:attr:`ModelSetup.source`: code hash, resolved ``load_model`` arguments, bundled weights hash), the task
folder's name and a hash of its metadata, vocabulary and split files; plus, per clip, the audio manifest. A folder
of another task or model is refused; one made by other model code (or by a version that recorded none) is
embedded again from scratch, saying so; a finished folder is rechecked clip by clip against the audio
(:func:`evaluation.audio_manifest.recheck`) and exactly the clips whose audio changed, or whose embedding file is
empty or unreadable, are embedded again.

One process writes a folder at a time (:func:`hear_atst.locks.folder_lock`; another waits, saying so).

Clips of equal length are batched up to ``batch_seconds`` of audio (a longer clip goes alone; the HEAR modules
chunk long audio internally). The batch plan depends only on the task, and every per-clip file is written
atomically and durably (:mod:`hear_atst.atomic`), so a run killed at any point resumes where it stopped and gives
byte-identical files.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from evaluation.audio_manifest import (
    ClipRecord,
    Recheck,
    append_records,
    manifest_sha256,
    read_manifest,
    recheck,
    write_manifest,
)
from evaluation.data import SplitEmbeddings, TaskEmbeddings, frame_labels
from evaluation.results import write_json_atomic
from evaluation.taskfolder import METADATA_FILENAME, VOCABULARY_FILENAME, TaskFolder, read_label_vocabulary
from hear_atst.atomic import atomic_write, remove_stale_temp_files, write_bytes_atomic
from hear_atst.locks import folder_lock
from tasks.audio import decode_audio

if TYPE_CHECKING:
    from hear_atst.foreign import ForeignModel

DONE_MARKER = ".done.embeddings"
CONFIG_FILENAME = "embedding-config.json"
PROFILE_FILENAME = "profile.embeddings.json"
DURATIONS_FILENAME = "clip-durations.json"
IDENTITY_KEYS = ("module", "options", "precision", "weights_sha256", "task_folder", "task_files_sha256")
REBUILD_KEYS = ("source", "device_class")  # a difference here re-embeds the folder: the code or hardware changed
DEFAULT_BATCH_SECONDS = 80.0  # ~ the kit's 0.7 * 120 s budget at 16 kHz (hear_eval.md §3.1)
SHUFFLE_SEED = 0
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
RESULTS_HASH_CHARS = 8  # weights sha256 prefix in a results folder name (model_id)
EMBEDDINGS_HASH_CHARS = 12  # ... and in an embeddings folder name


class EmbeddingCacheError(ValueError):
    """An embeddings folder is incomplete, inconsistent, or belongs to another model/task."""


@dataclass(frozen=True)
class ModelSetup:
    """A HEAR module with its options and weights: what identifies its embeddings, and how to load it."""

    name: str  # registry name, e.g. "atst_frame"
    module: str  # importable HEAR module, e.g. "hear_atst.atst_frame"
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of load_model
    weights: Path | None = None
    weights_sha256: str | None = None
    precision: str = "fp32"
    device: str = "cpu"
    source: ForeignModel | None = None  # a model from elsewhere (hear_atst.foreign): code identity and loader
    # A registered model's code identity (evaluation.model_source.registered_model_source: code hash, resolved
    # load_model arguments, bundled weights hash); a model from elsewhere has its source's identity instead.
    code_identity: dict[str, Any] = field(default_factory=dict)

    @property
    def device_class(self) -> str:
        """``cpu`` or ``cuda`` (...): embeddings of one device class are reproducible bit for bit."""
        return torch.device(self.device).type

    @property
    def source_identity(self) -> dict[str, Any]:
        """What determines the model's code: a foreign source's identity, else the registered code identity."""
        return self.source.identity if self.source is not None else self.code_identity

    def _source_suffix(self, chars: int) -> str:
        """A model from elsewhere: its distribution and version, or its file's sha256 (cut to ``chars``)."""
        return options_suffix(self.source.name_items(chars)) if self.source else ""

    def _name_options(self) -> dict[str, Any]:
        """The options that name results: load_model's, plus the precision when it is not fp32."""
        return {**self.options, **({} if self.precision == "fp32" else {"precision": self.precision})}

    @property
    def model_id(self) -> str:
        """Results folder name: ``<name><-k=v ...>``, plus ``-weights=<sha256[:8]>`` when a weights file is used,
        e.g. ``atst_frame-blocks=1-weights=1a2b3c4d``: results of two checkpoints never share a folder."""
        weights = {"weights": self.weights_sha256[:RESULTS_HASH_CHARS]} if self.weights_sha256 else {}
        return self.name + options_suffix({**self._name_options(), **weights}) + self._source_suffix(RESULTS_HASH_CHARS)

    @property
    def embeddings_dirname(self) -> str:
        """The kit's embeddings folder name ``<module><-k=v ...>``, plus ``-weights=<sha256[:12]>`` when a weights
        file is used, so embeddings of two checkpoints never share a folder."""
        weights = {"weights": self.weights_sha256[:EMBEDDINGS_HASH_CHARS]} if self.weights_sha256 else {}
        device = {} if self.device_class == "cpu" else {"device": self.device_class}
        return (self.module + options_suffix({**self._name_options(), **weights, **device})
                + self._source_suffix(EMBEDDINGS_HASH_CHARS))

    def identity(self, folder: TaskFolder) -> dict[str, Any]:
        """What must match for cached embeddings to be reused (the sample rate follows from these)."""
        return {"module": self.module, "options": self.options, "precision": self.precision,
                "weights_sha256": self.weights_sha256, "device_class": self.device_class,
                "source": self.source_identity, "task_folder": folder.name,
                "task_files_sha256": task_files_sha256(folder)}

    def load(self) -> tuple[Any, torch.nn.Module]:
        """The HEAR module (or, from elsewhere, its checked API) and its model, in eval mode on ``device``."""
        if self.source is not None:
            return self.source.load(self.weights, self.options, self.precision, self.device)
        module = importlib.import_module(self.module)
        weights = str(self.weights) if self.weights else None
        model = module.load_model(weights, precision=self.precision, **self.options)
        return module, model.to(self.device).eval()


def task_files(folder: TaskFolder) -> list[str]:
    """The task's description files, copied beside its embeddings: metadata, label vocabulary, split lists."""
    return [METADATA_FILENAME, VOCABULARY_FILENAME, *(f"{split}.json" for split in folder.splits)]


def task_files_sha256(folder: TaskFolder) -> str:
    """SHA-256 over the names and bytes of :func:`task_files`: a folder rebuilt with other clips or labels no
    longer matches embeddings cached under the same folder name (the audio itself is not read)."""
    digest = hashlib.sha256()
    for filename in task_files(folder):
        digest.update(filename.encode() + b"\0" + (folder.path / filename).read_bytes() + b"\0")
    return digest.hexdigest()


def options_suffix(options: dict[str, Any]) -> str:
    """``-k=v`` per option in key order, values slugified to ``[A-Za-z0-9._+]``."""
    parts = []
    for key in sorted(options):
        value = options[key]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        parts.append(f"-{key}={re.sub(r'[^A-Za-z0-9._+]+', '_', text).strip('_')}")
    return "".join(parts)


def task_embeddings_dir(embeddings_dir: str | os.PathLike[str], setup: ModelSetup, folder: TaskFolder) -> Path:
    return Path(embeddings_dir) / setup.embeddings_dirname / folder.name


def is_complete(out_dir: Path) -> bool:
    return (out_dir / DONE_MARKER).is_file()


# --- writing -----------------------------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


def plan_batches(lengths: dict[str, dict[str, int]], splits: list[str], rate: int,
                 batch_seconds: float) -> list[tuple[str, list[str]]]:
    """Batches of equal-length clips of one split, at most ``batch_seconds`` of audio (at least one clip each);
    clips in file-name order within each length. Depends only on the task, so a resumed run batches alike."""
    batches: list[tuple[str, list[str]]] = []
    for split in splits:
        by_length: dict[int, list[str]] = {}
        for name in sorted(lengths[split]):
            by_length.setdefault(lengths[split][name], []).append(name)
        for n_samples, names in sorted(by_length.items()):
            size = max(1, int(batch_seconds * rate // n_samples))
            batches.extend((split, names[i:i + size]) for i in range(0, len(names), size))
    return batches


def _valid_npy(path: Path) -> bool:
    """A complete ``.npy`` file: its header parses and the file holds exactly the bytes the header promises (a
    zero-length file left by a crash, or a torn one, is not)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in NPY_HEADER_READERS:
                return False
            shape, _, dtype = NPY_HEADER_READERS[version](handle)
            expected = handle.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return path.stat().st_size == expected
    except (OSError, ValueError):
        return False


def _embed_batch(module: ModuleType, model: torch.nn.Module, audio: torch.Tensor,
                 event: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if event:
        embeddings, timestamps = module.get_timestamp_embeddings(audio, model)
        return embeddings.detach().cpu().numpy(), timestamps.detach().cpu().numpy()
    return module.get_scene_embeddings(audio, model).detach().cpu().numpy(), None


def read_clip(path: Path) -> tuple[np.ndarray, ClipRecord]:
    """A clip's audio as the stage embeds it, and the record of the exact bytes decoded (their SHA-256)."""
    stat = path.stat()
    data = path.read_bytes()
    return decode_audio(data, path)[0], ClipRecord.of(stat, data)


def write_clip(split_dir: Path, name: str, embedding: np.ndarray, timestamps: np.ndarray | None,
               entries: list[Any]) -> None:
    """The per-clip files; the ``.embedding.npy`` last, so its presence marks the clip complete."""
    if timestamps is not None:
        times = [float(t) for t in timestamps]
        write_json_atomic(split_dir / f"{name}.timestamps.json", times)
        write_json_atomic(split_dir / f"{name}.target-labels.json", frame_labels(entries, times))
    else:
        write_json_atomic(split_dir / f"{name}.target-labels.json", entries)
    _save_npy(split_dir / f"{name}.embedding.npy", embedding)


def folder_config(setup: ModelSetup, identity: dict[str, Any], rate: int) -> dict[str, Any]:
    """``embedding-config.json``: the folder's identity, the model's name and weights, its sample rate, the device."""
    return {**identity, "model": setup.name, "weights": str(setup.weights) if setup.weights else None,
            "sample_rate": rate, "device": setup.device}


def prepare_folder(out_dir: Path, folder: TaskFolder, config: dict[str, Any]) -> None:
    """Create or resume ``out_dir`` (its identity already checked): a resumed folder must have been begun on this
    device; temporary files of a killed writer are removed (a live writer's never are)."""
    config_path = out_dir / CONFIG_FILENAME
    if config_path.is_file():
        begun_on = json.loads(config_path.read_text(encoding="utf-8")).get("device")
        if begun_on is not None and not _same_device(begun_on, config["device"]):
            raise EmbeddingCacheError(
                f"{out_dir} is unfinished and was begun on {begun_on}; finishing it on {config['device']} would mix "
                f"two devices' embeddings (their low-order bits differ): resume with --device {begun_on}, or remove "
                "it to start again"
            )
        remove_stale_temp_files(out_dir)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise _not_ours(out_dir)
    write_json_atomic(config_path, config)
    for filename in task_files(folder):
        with atomic_write(out_dir / filename) as handle:
            handle.write((folder.path / filename).read_bytes())


def _same_device(first: str | None, second: str) -> bool:
    """``cuda`` and ``cuda:0`` (or ``cpu`` and ``cpu:0``) name one device."""
    if first is None:
        return False
    a, b = torch.device(first), torch.device(second)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _not_ours(out_dir: Path) -> EmbeddingCacheError:
    return EmbeddingCacheError(
        f"{out_dir} holds files but no {CONFIG_FILENAME}: not written by hear-atst (perhaps by the HEAR kit), "
        "so it cannot be checked for reuse; remove it or choose another --embeddings-dir"
    )


def read_embedding_config(out_dir: Path) -> dict[str, Any]:
    """The stored ``embedding-config.json`` of ``out_dir``."""
    if not (out_dir / CONFIG_FILENAME).is_file():
        raise _not_ours(out_dir)
    return json.loads((out_dir / CONFIG_FILENAME).read_text(encoding="utf-8"))


def _check_identity(out_dir: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The stored embedding config of ``out_dir``, after checking that it is of this model and task."""
    stored = read_embedding_config(out_dir)
    differ = [key for key in IDENTITY_KEYS if stored.get(key) != identity[key]]
    if differ:
        detail = "; ".join(f"{key}: cached {stored.get(key)!r}, now {identity[key]!r}" for key in differ)
        raise EmbeddingCacheError(
            f"{out_dir} holds embeddings of a different model or task ({detail}); "
            "remove it or choose another --embeddings-dir"
        )
    return stored


def _rebuild_if_made_otherwise(out_dir: Path, identity: dict[str, Any], note: Callable[[str], None]) -> None:
    """When ``out_dir`` was embedded by other model code, load_model arguments, bundled weights or device class
    (or by a version that did not record them), forget every clip so that all are embedded again."""
    if not (out_dir / CONFIG_FILENAME).is_file():
        return
    stored = _check_identity(out_dir, identity)
    differ = [key for key in REBUILD_KEYS if stored.get(key) != identity[key]]
    if key_detail := _source_differences(stored, identity, differ):
        note(f"{out_dir} was embedded {key_detail}: embedding every clip again")
        (out_dir / DONE_MARKER).unlink(missing_ok=True)
        write_manifest(out_dir, {})
        write_json_atomic(out_dir / CONFIG_FILENAME, {**stored, **identity, "device": None})  # no clip: any device


def _source_differences(stored: dict[str, Any], identity: dict[str, Any], keys: list[str]) -> str:
    """How the stored source/device class differ from now, in words ('' when they do not)."""
    parts = []
    for key in keys:
        before, now = stored.get(key), identity[key]
        if key == "source" and isinstance(before, dict) and isinstance(now, dict):
            changed = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
            parts.append(f"with other model {', '.join(changed)}")
        elif before is None:
            parts.append(f"by a version that recorded no {key}")
        else:
            parts.append(f"with {key} {before!r} (now {now!r})")
    return "; ".join(parts)


def _clip_names(folder: TaskFolder) -> list[str]:
    return [f"{split}/{name}" for split in folder.splits for name in sorted(folder.labels[split])]


def _clips_to_embed(out_dir: Path, folder: TaskFolder, audio_dir: Path) -> Recheck:
    """Check every clip's audio against its record (size and mtime, bytes only when those moved) and its
    embedding file; touched-but-equal files get fresh records. ``changed`` also holds clips whose embedding file
    is missing, empty or unreadable."""
    records, clips = read_manifest(out_dir), _clip_names(folder)
    outcome = recheck(records, audio_dir, clips)
    for clip in set(clips) - outcome.changed - outcome.new:
        if not _valid_npy(out_dir / f"{clip}.embedding.npy"):
            outcome.changed.add(clip)
    if outcome.touched:
        write_manifest(out_dir, {**records, **outcome.touched})
    return outcome


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def embed_task(setup: ModelSetup, folder: TaskFolder, embeddings_dir: str | os.PathLike[str],
               batch_seconds: float = DEFAULT_BATCH_SECONDS, progress: bool = True,
               on_start: Callable[[str], None] | None = None) -> Path:
    """Embed every split of ``folder`` into the kit layout (or reuse a complete, matching cache); the folder path.

    The model is loaded only when some clip must be embedded: all of them, or, in a finished folder, exactly
    those whose audio changed since. ``on_start`` receives one-line notes: waiting for another writer, the cache
    used (or how many clips are embedded again, and why), work beginning (resampling, embedding).
    """
    note = on_start or (lambda _: None)
    out_dir = task_embeddings_dir(embeddings_dir, setup, folder)
    identity = setup.identity(folder)
    with folder_lock(out_dir, note):
        _rebuild_if_made_otherwise(out_dir, identity, note)
        if is_complete(out_dir):
            stored = _check_identity(out_dir, identity)
            audio_dir = folder.audio_dir(int(stored["sample_rate"]), progress=progress, note=note)
            outcome = _clips_to_embed(out_dir, folder, audio_dir)
            if not outcome.changed and not outcome.new:
                touched = f" ({len(outcome.touched)} touched file(s) hashed again: unchanged)" * bool(outcome.touched)
                note(f"using the cached embeddings of {folder.name} in {out_dir}{touched}")
                return out_dir
            note(f"{len(outcome.changed | outcome.new)} of {len(_clip_names(folder))} clip(s) of {folder.name} "
                 f"changed since they were embedded (audio bytes, or an empty or unreadable embedding file): "
                 "embedding exactly those again")
            (out_dir / DONE_MARKER).unlink()
            _embed_missing(setup, folder, out_dir, identity, batch_seconds, progress, note, outcome)
        else:
            _embed_missing(setup, folder, out_dir, identity, batch_seconds, progress, note)
    return out_dir


def _embed_missing(setup: ModelSetup, folder: TaskFolder, out_dir: Path, identity: dict[str, Any],
                   batch_seconds: float, progress: bool, note: Callable[[str], None],
                   outcome: Recheck | None = None) -> None:
    """Embed every clip not embedded from its present audio, then write the per-split files and the marker.
    ``outcome``: the recheck of a finished folder's clips, already done (else it is done here)."""
    module, model = setup.load()
    rate = int(model.sample_rate)
    config = folder_config(setup, identity, rate)
    started = time.perf_counter()
    note(f"embedding {folder.name} with {setup.model_id} at {rate} Hz into {out_dir}")
    audio_dir = folder.audio_dir(rate, progress=progress, note=note)
    lengths = folder.check_audio(rate)
    prepare_folder(out_dir, folder, config)
    if outcome is None:
        outcome = _clips_to_embed(out_dir, folder, audio_dir)
    todo = outcome.changed | outcome.new
    event = folder.embedding_type == "event"
    batches = plan_batches(lengths, folder.splits, rate, batch_seconds)
    total = sum(len(names) for _, names in batches)
    with _progress(progress) as bar:
        task_bar = bar.add_task(f"embed {folder.name}", total=total)
        for split, names in batches:
            if todo.isdisjoint(f"{split}/{name}" for name in names):
                bar.advance(task_bar, len(names))
                continue
            clips, records = [], {}
            for name in names:
                audio, record = read_clip(audio_dir / split / name)
                clips.append(audio)
                if f"{split}/{name}" in todo:
                    records[f"{split}/{name}"] = record
            embeddings, timestamps = _embed_batch(module, model, torch.from_numpy(np.stack(clips)).to(setup.device),
                                                  event)
            for index, name in enumerate(names):
                if f"{split}/{name}" in records:
                    write_clip(out_dir / split, name, embeddings[index],
                               None if timestamps is None else timestamps[index], folder.labels[split][name])
            append_records(out_dir, records)
            bar.advance(task_bar, len(names))
    for split, names in kit_order(folder.splits, {split: list(folder.labels[split]) for split in folder.splits}
                                  ).items():
        write_split_arrays(out_dir, split, names, event)
    close_folder(out_dir, folder, lengths, rate, setup, time.perf_counter() - started)


def close_folder(out_dir: Path, folder: TaskFolder, lengths: dict[str, dict[str, int]], rate: int,
                 setup: ModelSetup, seconds: float) -> None:
    """The folder's last files once every split's arrays are written: the clips' durations, the audio manifest
    (one line a clip of the task, sorted), the profile (``seconds`` of embedding), and the marker that makes the
    folder complete."""
    write_json_atomic(out_dir / DURATIONS_FILENAME, {f"{split}/{name}": n / rate for split in folder.splits
                                                     for name, n in sorted(lengths[split].items())})
    clips = set(_clip_names(folder))
    write_manifest(out_dir, {clip: record for clip, record in read_manifest(out_dir).items() if clip in clips})
    write_json_atomic(out_dir / PROFILE_FILENAME, _profile(setup, seconds))
    write_bytes_atomic(out_dir / DONE_MARKER, b"")


def cache_provenance(out_dir: Path) -> dict[str, Any]:
    """What a results file records of the embeddings it was probed on: the folder, its identity and the hash of
    its audio manifest (:func:`evaluation.audio_manifest.manifest_sha256`)."""
    stored = read_embedding_config(out_dir)
    keys = (*IDENTITY_KEYS, *REBUILD_KEYS, "sample_rate", "device")
    return {"path": str(out_dir), "identity": {key: stored.get(key) for key in keys},
            "audio_manifest_sha256": manifest_sha256(read_manifest(out_dir))}


def _profile(setup: ModelSetup, seconds: float) -> dict[str, Any]:
    """The kit's ``profile.embeddings.json`` (GPU memory here: this process's peak allocation, in GB)."""
    cuda = setup.device.startswith("cuda") and torch.cuda.is_available()
    return {"time_elapsed": seconds,
            "gpu_max_mem": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
            "gpu_device_name": torch.cuda.get_device_name() if cuda else None}


def kit_order(splits: list[str], files: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per split, the clips in memmap row order: sorted, then shuffled by one ``random.Random(0)`` across splits."""
    prng = random.Random(SHUFFLE_SEED)
    ordered = {}
    for split in splits:
        names = sorted(files[split])
        prng.shuffle(names)
        ordered[split] = names
    return ordered


def write_split_arrays(out_dir: Path, split: str, names: list[str], event: bool) -> None:
    """A split's arrays of the kit from its per-clip files, rows in the order of ``names`` (:func:`kit_order`): raw
    float32 memmap, dimensions, labels pickle, filename-timestamps."""
    split_dir = out_dir / split
    shapes = [np.load(split_dir / f"{name}.embedding.npy", mmap_mode="r").shape for name in names]
    if len({shape[-1] for shape in shapes}) != 1:
        raise EmbeddingCacheError(f"{split_dir}: clips have different embedding sizes {sorted(set(shapes))}")
    rows = sum(shape[0] for shape in shapes) if event else len(shapes)
    dims = [rows, shapes[0][-1]]
    labels: list[Any] = []
    filename_timestamps: list[list[Any]] = []
    with atomic_write(out_dir / f"{split}.embeddings.npy") as handle:  # filled clip by clip: bounded memory
        for name in names:
            handle.write(np.load(split_dir / f"{name}.embedding.npy", allow_pickle=False).tobytes())
            clip_labels = json.loads((split_dir / f"{name}.target-labels.json").read_text(encoding="utf-8"))
            if event:
                labels += clip_labels
                times = json.loads((split_dir / f"{name}.timestamps.json").read_text(encoding="utf-8"))
                filename_timestamps += [[f"{split}/{name}", t] for t in times]
            else:
                labels.append(clip_labels)
    write_json_atomic(out_dir / f"{split}.embedding-dimensions.json", dims)
    with atomic_write(out_dir / f"{split}.target-labels.pkl") as handle:
        pickle.dump(labels, handle)
    if event:
        write_json_atomic(out_dir / f"{split}.filename-timestamps.json", filename_timestamps)


# --- reading -----------------------------------------------------------------------------------------------------

def load_task_embeddings(path: str | os.PathLike[str]) -> TaskEmbeddings:
    """Read a complete embeddings folder written by hear-atst or by the HEAR kit, from the per-clip files.

    Rows follow :func:`kit_order` (for our folders, the memmap's order). Labels become strings, the vocabulary's
    form. The pickled labels are never read; the per-split memmap's size and dimensions file are checked against
    the per-clip files.
    """
    path = Path(path)
    if not is_complete(path):
        raise EmbeddingCacheError(f"{path}: no {DONE_MARKER}; the embeddings are missing or incomplete")
    metadata = json.loads((path / METADATA_FILENAME).read_text(encoding="utf-8"))
    problems: list[str] = []
    vocabulary = read_label_vocabulary(path / VOCABULARY_FILENAME, problems)
    if vocabulary is None:
        raise EmbeddingCacheError("; ".join(problems))
    event = metadata["embedding_type"] == "event"
    references = {split: json.loads((path / f"{split}.json").read_text(encoding="utf-8"))
                  for split in metadata["splits"]}
    order = kit_order(list(metadata["splits"]), {split: list(ref) for split, ref in references.items()})
    splits = {split: _read_split(path, split, names, event) for split, names in order.items()}
    events = {split: {name: [{**e, "label": str(e["label"])} for e in ref[name]] for name in sorted(ref)}
              for split, ref in references.items()} if event else {}
    durations_path = path / DURATIONS_FILENAME  # absent from the kit's folders
    durations = json.loads(durations_path.read_text(encoding="utf-8")) if durations_path.is_file() else {}
    return TaskEmbeddings(metadata=metadata, label_vocabulary=list(vocabulary), splits=splits, events=events,
                          durations={clip.rpartition("/")[2]: float(seconds) for clip, seconds in durations.items()})


def _read_split(path: Path, split: str, names: list[str], event: bool) -> SplitEmbeddings:
    split_dir = path / split
    arrays, labels, filenames, times = [], [], [], []
    for name in names:
        stem = split_dir / name
        try:
            array = np.load(f"{stem}.embedding.npy", allow_pickle=False)
            clip_labels = json.loads(Path(f"{stem}.target-labels.json").read_text(encoding="utf-8"))
            clip_times = json.loads(Path(f"{stem}.timestamps.json").read_text(encoding="utf-8")) if event else None
        except (OSError, ValueError) as error:
            raise EmbeddingCacheError(f"{stem}: per-clip embedding files unreadable or missing ({error})") from None
        if event:
            if array.ndim != 2 or not len(array) == len(clip_labels) == len(clip_times):
                raise EmbeddingCacheError(f"{stem}: {array.shape} embedding, {len(clip_labels)} label rows and "
                                          f"{len(clip_times)} timestamps disagree")
            labels += [[str(label) for label in frame] for frame in clip_labels]
            filenames += [name] * len(array)
            times += clip_times
        else:
            if array.ndim != 1:
                raise EmbeddingCacheError(f"{stem}.embedding.npy: scene embedding of shape {array.shape}, expected [D]")
            labels.append([str(label) for label in clip_labels])
            filenames.append(name)
        arrays.append(array.astype(np.float32, copy=False))
    matrix = np.concatenate(arrays) if event else np.stack(arrays)
    dims_path = path / f"{split}.embedding-dimensions.json"
    if dims_path.is_file() and json.loads(dims_path.read_text(encoding="utf-8")) != list(matrix.shape):
        raise EmbeddingCacheError(f"{dims_path}: says {dims_path.read_text().strip()}, the clips give {matrix.shape}")
    memmap = path / f"{split}.embeddings.npy"  # raw float32 rows (the kit's np.memmap), no header
    if memmap.is_file() and memmap.stat().st_size != matrix.size * 4:
        raise EmbeddingCacheError(f"{memmap}: {memmap.stat().st_size} bytes, the clips give {matrix.shape} float32 "
                                  f"= {matrix.size * 4} bytes")
    return SplitEmbeddings(name=split, embeddings=matrix, labels=labels, filenames=filenames,
                           timestamps=np.asarray(times, dtype=np.float64) if event else None)
