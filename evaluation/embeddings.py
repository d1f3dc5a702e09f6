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
- ``profile.embeddings.json`` and the ``.done.embeddings`` marker.

Differences from the kit, on purpose: the clip list is sorted before the shuffle (the kit shuffles a directory
listing, whose order depends on the file system), so the row order is reproducible; the event slug is
``<split>/<file>`` relative to the task folder (the kit writes the path it was given; readers keep only the file
name); the weights file's short sha256 and a non-default precision join the model options in the folder name, and
``embedding-config.json`` records the identity (model, options, precision, weights hash, task folder name and a
hash of its metadata, vocabulary and split files), which must match when a folder is reused; the frame-label rule
is ``start <= t < end`` (the kit's interval tree uses ``end + 0.0001``, :func:`evaluation.data.frame_labels`).

Clips of equal length are batched up to ``batch_seconds`` of audio (a longer clip goes alone; the HEAR modules
chunk long audio internally). The batch plan depends only on the task, and every per-clip file is written
atomically, so a run killed at any point resumes where it stopped and gives byte-identical files.
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

from evaluation.data import SplitEmbeddings, TaskEmbeddings, frame_labels
from evaluation.results import write_json_atomic
from evaluation.taskfolder import METADATA_FILENAME, VOCABULARY_FILENAME, TaskFolder, read_label_vocabulary
from hear_atst.atomic import atomic_write
from tasks.audio import read_audio

if TYPE_CHECKING:
    from hear_atst.foreign import ForeignModel

DONE_MARKER = ".done.embeddings"
CONFIG_FILENAME = "embedding-config.json"
PROFILE_FILENAME = "profile.embeddings.json"
IDENTITY_KEYS = ("module", "options", "precision", "weights_sha256", "source", "task_folder", "task_files_sha256")
DEFAULT_BATCH_SECONDS = 80.0  # ~ the kit's 0.7 * 120 s budget at 16 kHz (hear_eval.md §3.1)
SHUFFLE_SEED = 0
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
        return (self.module + options_suffix({**self._name_options(), **weights})
                + self._source_suffix(EMBEDDINGS_HASH_CHARS))

    def identity(self, folder: TaskFolder) -> dict[str, Any]:
        """What must match for cached embeddings to be reused (the sample rate follows from these)."""
        return {"module": self.module, "options": self.options, "precision": self.precision,
                "weights_sha256": self.weights_sha256, "source": self.source.identity if self.source else None,
                "task_folder": folder.name,
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


def _clip_done(split_dir: Path, name: str) -> bool:
    return (split_dir / f"{name}.embedding.npy").is_file()  # written last


def _embed_batch(module: ModuleType, model: torch.nn.Module, audio: torch.Tensor,
                 event: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if event:
        embeddings, timestamps = module.get_timestamp_embeddings(audio, model)
        return embeddings.detach().cpu().numpy(), timestamps.detach().cpu().numpy()
    return module.get_scene_embeddings(audio, model).detach().cpu().numpy(), None


def _write_clip(split_dir: Path, name: str, embedding: np.ndarray, timestamps: np.ndarray | None,
                entries: list[Any]) -> None:
    """The per-clip files; the ``.embedding.npy`` last, so its presence marks the clip complete."""
    if timestamps is not None:
        times = [float(t) for t in timestamps]
        write_json_atomic(split_dir / f"{name}.timestamps.json", times)
        write_json_atomic(split_dir / f"{name}.target-labels.json", frame_labels(entries, times))
    else:
        write_json_atomic(split_dir / f"{name}.target-labels.json", entries)
    _save_npy(split_dir / f"{name}.embedding.npy", embedding)


def _prepare_dir(out_dir: Path, folder: TaskFolder, config: dict[str, Any]) -> None:
    """Create or resume ``out_dir``: the identity must match; stray temporary files of a killed run are removed."""
    config_path = out_dir / CONFIG_FILENAME
    if config_path.is_file():
        begun_on = _check_identity(out_dir, config).get("device")
        if not _same_device(begun_on, config["device"]):
            raise EmbeddingCacheError(
                f"{out_dir} is unfinished and was begun on {begun_on}; finishing it on {config['device']} would mix "
                f"two devices' embeddings (their low-order bits differ): resume with --device {begun_on}, or remove "
                "it to start again"
            )
        for stray in out_dir.rglob("*.tmp"):
            stray.unlink()
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise _not_ours(out_dir)
    else:
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


def _check_identity(out_dir: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The stored embedding config of ``out_dir``, after checking that it has ``identity``."""
    if not (out_dir / CONFIG_FILENAME).is_file():
        raise _not_ours(out_dir)
    stored = json.loads((out_dir / CONFIG_FILENAME).read_text(encoding="utf-8"))
    differ = [key for key in IDENTITY_KEYS if stored.get(key) != identity[key]]
    if differ:
        detail = "; ".join(f"{key}: cached {stored.get(key)!r}, now {identity[key]!r}" for key in differ)
        raise EmbeddingCacheError(
            f"{out_dir} holds embeddings of a different model or task ({detail}); "
            "remove it or choose another --embeddings-dir"
        )
    return stored


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def embed_task(setup: ModelSetup, folder: TaskFolder, embeddings_dir: str | os.PathLike[str],
               batch_seconds: float = DEFAULT_BATCH_SECONDS, progress: bool = True,
               on_start: Callable[[str], None] | None = None) -> Path:
    """Embed every split of ``folder`` into the kit layout (or reuse a complete, matching cache); the folder path.

    The model is loaded only when the cache is not complete. ``on_start`` receives a one-line note before
    work begins (resampling, embedding), or saying that the cache is used.
    """
    out_dir = task_embeddings_dir(embeddings_dir, setup, folder)
    identity = setup.identity(folder)
    if is_complete(out_dir):
        _check_identity(out_dir, identity)
        if on_start:
            on_start(f"using the cached embeddings of {folder.name} in {out_dir}")
        return out_dir
    module, model = setup.load()
    rate = int(model.sample_rate)
    config = {**identity, "model": setup.name, "weights": str(setup.weights) if setup.weights else None,
              "sample_rate": rate, "device": setup.device}
    started = time.perf_counter()
    if on_start:
        on_start(f"embedding {folder.name} with {setup.model_id} at {rate} Hz into {out_dir}")
    audio_dir = folder.audio_dir(rate, progress=progress)
    lengths = folder.check_audio(rate)
    _prepare_dir(out_dir, folder, config)
    event = folder.embedding_type == "event"
    batches = plan_batches(lengths, folder.splits, rate, batch_seconds)
    total = sum(len(names) for _, names in batches)
    with _progress(progress) as bar:
        task_bar = bar.add_task(f"embed {folder.name}", total=total)
        for split, names in batches:
            split_dir = out_dir / split
            todo = [name for name in names if not _clip_done(split_dir, name)]
            if todo:
                clips = np.stack([read_audio(audio_dir / split / name)[0] for name in names])
                embeddings, timestamps = _embed_batch(module, model, torch.from_numpy(clips).to(setup.device), event)
                for index, name in enumerate(names):
                    if name in todo:
                        _write_clip(split_dir, name, embeddings[index],
                                    None if timestamps is None else timestamps[index], folder.labels[split][name])
            bar.advance(task_bar, len(names))
    _finalise(out_dir, folder, event)
    write_json_atomic(out_dir / PROFILE_FILENAME, _profile(setup, time.perf_counter() - started))
    (out_dir / DONE_MARKER).touch()
    return out_dir


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


def _finalise(out_dir: Path, folder: TaskFolder, event: bool) -> None:
    """The per-split arrays of the kit: raw float32 memmap, dimensions, labels pickle, filename-timestamps."""
    order = kit_order(folder.splits, {split: list(folder.labels[split]) for split in folder.splits})
    for split, names in order.items():
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
    return TaskEmbeddings(metadata=metadata, label_vocabulary=list(vocabulary), splits=splits, events=events)


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
