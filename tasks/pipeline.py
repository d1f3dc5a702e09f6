"""hear-preprocess 2021.1.1 as one function, shared by every task (hear_preprocess.md §1-§7).

metadata table -> stems and split keys -> sort + seeded shuffle -> splits -> checks -> event trimming -> CSV round
trip -> per-split subsampling -> audio (mono 16-bit, trimmed/padded at the source rate, then resampled per rate) ->
``<split>.json``, ``labelvocabulary.csv``, ``task_metadata.json``.

Resumable and idempotent: audio is written atomically and existing clips are skipped; ``task_metadata.json`` is
written last, so a folder holding it (and every clip its split JSONs name) is complete and is left untouched.
``.prepare-pending.json`` records the configuration of an unfinished run so that a resume with a different
configuration is refused instead of mixing clips. Deviation from hear-preprocess: no tarballs are written, and
resampling is dither-free (ffmpeg's soxr adds random TPDF dither, so its resampled outputs are not reproducible).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hear_atst.atomic import write_bytes_atomic
from tasks.audio import fit_length, read_audio, resample, to_mono, to_pcm16, write_wav_pcm16
from tasks.download import DOWNLOADS_DIRNAME, locate
from tasks.hear_format import (
    HEAR_SAMPLE_RATES,
    METADATA_FILENAME,
    PREPARE_PENDING,
    TEST_PERCENTAGE,
    TRAIN_PERCENTAGE,
    VALIDATION_PERCENTAGE,
    VOCABULARY_FILENAME,
)
from tasks.hear_rng import array_split, shuffle_rows, shuffled
from tasks.registry import WORKDIR_NAME, TaskSpec, folder_name, get_spec, run_config

log = logging.getLogger(__name__)

KFOLD_RETRIES = 1000


class PrepareError(RuntimeError):
    """The data or the task folder violates a hear-preprocess rule."""


# ----------------------------------------------------------------------------------------------------- files (§7)


def hear_json(data: Any) -> bytes:
    """``json.dump(data, indent=True)``: 1-space indent, ASCII, no trailing newline."""
    return json.dumps(data, indent=1).encode("ascii")


# ------------------------------------------------------------------------------------------------ metadata (§2, §4)


def postprocess_metadata(meta: pd.DataFrame, spec: TaskSpec, small: bool) -> pd.DataFrame:
    """Stems, split keys, sort, seeded shuffle; rows without audio are dropped in small mode only."""
    meta = meta.copy()
    if "unique_filestem" not in meta:
        meta["unique_filestem"] = meta["relpath"].map(spec.filestem)
    meta["split_key"] = spec.split_key(meta) if spec.split_key else meta["unique_filestem"]
    if meta["unique_filestem"].str.contains("/").any():
        raise PrepareError(f"{spec.name}: a file stem contains '/'")
    pairs = meta[["relpath", "unique_filestem"]].drop_duplicates()
    if pairs["relpath"].nunique() != pairs["unique_filestem"].nunique() or len(pairs) != pairs["relpath"].nunique():
        dup = pairs[pairs["unique_filestem"].duplicated(keep=False)].head(4)
        raise PrepareError(f"{spec.name}: file stems are not unique, e.g. {dup['relpath'].tolist()}")
    keys = ["unique_filestem", "start", "end", "label"] if "start" in meta else ["unique_filestem", "label"]
    meta = meta.sort_values(keys, kind="stable").reset_index(drop=True)
    meta = shuffle_rows(meta, "postprocess_all_metadata")
    exists = meta["relpath"].map(lambda p: os.path.isfile(p))
    if not exists.all():
        missing = sorted(set(meta.loc[~exists, "relpath"]))
        if not small:
            shown = "\n  ".join(missing[:5])
            raise FileNotFoundError(f"{spec.name}: {len(missing)} source audio files are missing:\n  {shown}")
        log.info("%s: small mode drops %d rows without audio", spec.name, (~exists).sum())
        meta = meta[exists].reset_index(drop=True)
    if meta.empty:
        raise PrepareError(f"{spec.name}: no audio files found in the source")
    return meta


# ------------------------------------------------------------------------------------------------------ splits (§5)


def split_train_test_val(meta: pd.DataFrame, config: Mapping[str, Any]) -> pd.DataFrame:
    """§5.1: sample the missing valid/test splits from the train split keys."""
    present = set(meta["split"].unique())
    if "train" not in present:
        raise PrepareError(f"{config['task_name']}: no train split in the metadata")
    missing = {"train", "valid", "test"} - present
    if not missing:
        return meta
    pct = config.get("split_percentage", {"train": TRAIN_PERCENTAGE, "valid": VALIDATION_PERCENTAGE,
                                          "test": TEST_PERCENTAGE})
    train_pct, valid_pct, test_pct = pct["train"], pct["valid"], pct["test"]
    if missing == {"valid"}:
        tot = (train_pct + valid_pct) / 100
        valid_pct, train_pct, test_pct = valid_pct / tot, train_pct / tot, 0.0
    elif missing == {"test"}:
        tot = (train_pct + test_pct) / 100
        test_pct, train_pct, valid_pct = test_pct / tot, train_pct / tot, 0.0
    if train_pct + valid_pct + test_pct != 100:
        raise PrepareError(f"{config['task_name']}: split percentages do not sum to 100: {pct}")
    keys = shuffled(sorted(meta.loc[meta["split"] == "train", "split_key"].unique()), "split_train_test_val")
    n_valid = round(len(keys) * valid_pct / 100)
    n_test = round(len(keys) * test_pct / 100)
    if (valid_pct and n_valid == 0) or (test_pct and n_test == 0):
        raise PrepareError(f"{config['task_name']}: too few split keys ({len(keys)}) to sample valid and test")
    meta = meta.copy()
    meta.loc[meta["split_key"].isin(set(keys[:n_valid])), "split"] = "valid"
    meta.loc[meta["split_key"].isin(set(keys[n_valid:n_valid + n_test])), "split"] = "test"
    return meta


def split_k_folds(meta: pd.DataFrame, config: Mapping[str, Any]) -> pd.DataFrame:
    """§5.3: pool every key, shuffle with ``split_k_folds`` (then retry seeds) until every fold has every label."""
    nfolds = config["nfolds"]
    keys = sorted(meta["split_key"].unique())
    accept_any = config["mode"] == "small" or (
        config["embedding_type"] == "event" and config["prediction_type"] == "multilabel"
    )
    n_labels = meta["label"].nunique()
    seeds = ["split_k_folds"] + [f"split_k_folds_retry_{i}" for i in range(KFOLD_RETRIES - 1)]
    for seed in seeds:
        fold_of = {key: f"fold{j:02d}" for j, chunk in enumerate(array_split(shuffled(keys, seed), nfolds))
                   for key in chunk}
        out = meta.assign(split=meta["split_key"].map(fold_of))
        if accept_any or (out.groupby("split")["label"].nunique() == n_labels).all():
            return out
    raise PrepareError(f"{config['task_name']}: no seed gives every label in every fold")


def create_splits(meta: pd.DataFrame, config: Mapping[str, Any]) -> pd.DataFrame:
    mode = config["split_mode"]
    if mode == "trainvaltest":
        return split_train_test_val(meta, config)
    if mode == "new_split_kfold":
        return split_k_folds(meta, config)
    if mode == "presplit_kfold":
        if set(meta["split"].unique()) != set(config["splits"]):
            raise PrepareError(f"{config['task_name']}: folds {sorted(meta['split'].unique())} != {config['splits']}")
        return meta
    raise PrepareError(f"unknown split_mode {mode!r}")


def check_split_labels(meta: pd.DataFrame, config: Mapping[str, Any], stage: str) -> None:
    """§5.4: every split holds every label (not checked in small mode; only a warning for event multilabel)."""
    if config["mode"] == "small":
        return
    labels = set(meta["label"].unique())
    for split, rows in meta.groupby("split"):
        lacking = labels - set(rows["label"].unique())
        if lacking:
            message = f"{config['task_name']} {stage}: split {split} lacks labels {sorted(map(str, lacking))}"
            if config["embedding_type"] == "event" and config["prediction_type"] == "multilabel":
                log.warning(message)
            else:
                raise PrepareError(message)


def check_splits(meta: pd.DataFrame, config: Mapping[str, Any]) -> None:
    per_stem = meta.groupby("unique_filestem")["split"].nunique()
    if (per_stem != 1).any():
        several = per_stem[per_stem != 1].index[:5].tolist()
        raise PrepareError(f"{config['task_name']}: files in several splits: {several}")
    if config["embedding_type"] == "scene" and config["prediction_type"] == "multiclass":
        counts = meta["unique_filestem"].value_counts()
        if (counts != 1).any():
            raise PrepareError(f"{config['task_name']}: multiclass files with several labels: "
                               f"{counts[counts != 1].index[:5].tolist()}")
    check_split_labels(meta, config, "after splitting")


# -------------------------------------------------------------------------------------------- trim + subsample (§6)


def trim_events(meta: pd.DataFrame, sample_duration: float) -> pd.DataFrame:
    """§6.1: drop events starting at or after the clip end, clip the others' ends."""
    limit = sample_duration * 1000.0
    kept = meta[meta["start"] < limit].copy()
    kept.loc[kept["end"] > limit, "end"] = limit
    lost = set(meta["unique_filestem"]) - set(kept["unique_filestem"])
    if lost:
        raise PrepareError(f"files lose every event when trimmed to {sample_duration} s: {sorted(lost)[:5]}")
    return kept.reset_index(drop=True)


def csv_round_trip(meta: pd.DataFrame) -> pd.DataFrame:
    """hear-preprocess writes and re-reads its metadata CSV: numeric-looking labels become numbers (§7.1)."""
    buffer = io.StringIO()
    meta.to_csv(buffer, index=False)
    buffer.seek(0)
    return pd.read_csv(buffer, dtype={"relpath": str, "unique_filestem": str, "split": str, "split_key": str})


def subsample(meta: pd.DataFrame, config: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """§6.2: per split, the (stem, relpath) pairs kept under the duration budget, in shuffled order."""
    kept = {}
    duration = config["sample_duration"]
    for split in config["splits"]:
        pairs = meta.loc[meta["split"] == split, ["unique_filestem", "relpath"]].drop_duplicates()
        pairs = shuffle_rows(pairs.sort_values("unique_filestem").reset_index(drop=True), f"SubsampleSplit({split})")
        if config["split_mode"] == "trainvaltest":
            budget = config["max_task_duration_by_split"][split]
        else:
            budget = config["max_task_duration_by_fold"]
        if budget is not None:
            pairs = pairs.head(int(budget / duration))
        kept[split] = list(zip(pairs["unique_filestem"], pairs["relpath"], strict=True))
    empty = [split for split, pairs in kept.items() if not pairs]
    if empty:
        raise PrepareError(f"{config['task_name']}: no files in {', '.join(empty)} (fewer split keys "
                           f"than splits, or a duration budget under one {duration} s clip)")
    return kept


# ---------------------------------------------------------------------------------------------------- outputs (§7)


def _label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def split_json(meta: pd.DataFrame, stems: Sequence[str], event: bool) -> dict[str, list[Any]]:
    """``{file.wav: [label, ...]}`` or ``{file.wav: [{label, start, end}, ...]}``, rows in metadata order."""
    rows = meta[meta["unique_filestem"].isin(set(stems))]
    out: dict[str, list[Any]] = {}
    for stem, label, start, end in zip(
        rows["unique_filestem"], rows["label"],
        rows["start"] if event else rows["label"], rows["end"] if event else rows["label"], strict=True,
    ):
        entry = {"label": _label(label), "start": float(start), "end": float(end)} if event else _label(label)
        out.setdefault(f"{stem}.wav", []).append(entry)
    return dict(sorted(out.items()))


def label_vocabulary_csv(labels: set[Any]) -> bytes:
    vocab = pd.DataFrame({"idx": range(len(labels)), "label": sorted(_label(x) for x in labels)})
    return vocab.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _write_clip(relpath: str, sample_duration: float | None, outputs: Sequence[tuple[Path, int]]) -> None:
    """Mono 16-bit at the source rate, trimmed/padded, then resampled to every missing output."""
    todo = [(path, sr) for path, sr in outputs if not path.exists()]
    if not todo:
        return
    audio, native = read_audio(relpath)
    audio = to_pcm16(to_mono(audio)).astype(np.float32) / 32768.0
    if sample_duration is not None:
        audio = fit_length(audio, round(sample_duration * native))
    for path, sr in todo:
        write_wav_pcm16(path, resample(audio, native, sr), sr)


def write_clips(jobs: Sequence[tuple[str, Sequence[tuple[Path, int]]]], sample_duration: float | None,
                workers: int) -> None:
    """:func:`_write_clip` for every ``(relpath, outputs)`` on ``workers`` threads. The first error (it names its
    file) cancels the clips not yet started and is raised as soon as the running ones have finished."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_write_clip, relpath, sample_duration, outputs) for relpath, outputs in jobs]
        try:
            for future in as_completed(futures):
                future.result()
        finally:
            pool.shutdown(cancel_futures=True)


def _remove_stale(folder: Path, sample_rates: Sequence[int], kept: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    for sr in sample_rates:
        for split, pairs in kept.items():
            split_dir = folder / str(sr) / split
            if split_dir.is_dir():
                wanted = {f"{stem}.wav" for stem, _ in pairs}
                for path in split_dir.iterdir():
                    if path.name not in wanted:
                        path.unlink()


def is_complete(folder: Path, metadata_bytes: bytes, sample_rates: Sequence[int]) -> bool:
    """True when ``folder`` holds this exact task metadata and every clip its split JSONs name, at every rate."""
    meta_path = folder / METADATA_FILENAME
    if not meta_path.is_file():
        return False
    if meta_path.read_bytes() != metadata_bytes:
        raise PrepareError(f"{folder} was prepared with a different configuration ({meta_path}); delete it first")
    config = json.loads(metadata_bytes)
    for split in config["splits"]:
        names = json.loads((folder / f"{split}.json").read_text())
        for sr in sample_rates:
            split_dir = folder / str(sr) / split
            if not split_dir.is_dir() or not set(names) <= {p.name for p in split_dir.iterdir()}:
                return False
    return True


def prepared_folder(spec: TaskSpec, tasks_dir: str | Path, mode: str | None = None,
                    sample_rates: Sequence[int] = (16000,)) -> Path | None:
    """The task's folder under ``tasks_dir`` when it is complete at every rate (what :func:`prepare_task` would leave
    untouched), else None."""
    config = run_config(spec.config, mode)
    folder = Path(tasks_dir) / folder_name(config)
    return folder if is_complete(folder, hear_json(config), sample_rates) else None


def prepare_task(
    spec: TaskSpec,
    tasks_dir: str | Path,
    *,
    source: str | Path | None = None,
    sample_rates: Sequence[int] = (16000,),
    mode: str | None = None,
    workers: int | None = None,
) -> Path:
    """Build (or finish, or confirm) ``<tasks_dir>/<task>-<version>-<mode>/`` and return its path."""
    for sr in sample_rates:
        if sr not in HEAR_SAMPLE_RATES:
            raise ValueError(f"sample rate {sr} is not a HEAR rate {HEAR_SAMPLE_RATES}")
    config = run_config(spec.config, mode)
    metadata_bytes = hear_json(config)
    tasks_dir = Path(tasks_dir)
    folder = tasks_dir / folder_name(config)
    if is_complete(folder, metadata_bytes, sample_rates):
        log.info("%s is already prepared at %s Hz", folder, ",".join(map(str, sample_rates)))
        return folder
    pending = folder / PREPARE_PENDING
    if pending.is_file() and pending.read_bytes() != metadata_bytes:
        raise PrepareError(f"{pending}: an unfinished run used a different configuration; delete {folder} first")
    workdir = tasks_dir / WORKDIR_NAME / folder.name
    src = Path(source).expanduser() if source is not None else None
    roots = locate(spec.sources[config["mode"]], src, workdir, tasks_dir / DOWNLOADS_DIRNAME)
    workdir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(pending, metadata_bytes)
    small = config["mode"] == "small"
    meta = postprocess_metadata(spec.build_metadata(roots, config, workdir), spec, small)
    meta = create_splits(meta, config)
    check_splits(meta, config)
    event = config["embedding_type"] == "event"
    if event and config["sample_duration"] is not None:
        meta = trim_events(meta, config["sample_duration"])
    meta = csv_round_trip(meta)
    kept = subsample(meta, config)
    kept_meta = meta[meta["unique_filestem"].isin({stem for pairs in kept.values() for stem, _ in pairs})]
    check_split_labels(kept_meta, config, "after subsampling")

    _remove_stale(folder, sample_rates, kept)
    jobs = [
        (relpath, [(folder / str(sr) / split / f"{stem}.wav", sr) for sr in sample_rates])
        for split, pairs in kept.items() for stem, relpath in pairs
    ]
    write_clips(jobs, config["sample_duration"], workers or os.cpu_count() or 1)

    for split, pairs in kept.items():
        write_bytes_atomic(folder / f"{split}.json", hear_json(split_json(meta, [s for s, _ in pairs], event)))
    write_bytes_atomic(folder / VOCABULARY_FILENAME, label_vocabulary_csv(set(kept_meta["label"])))
    write_bytes_atomic(folder / METADATA_FILENAME, metadata_bytes)
    pending.unlink()
    shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the work folder's parent goes too once no other task is being prepared
        workdir.parent.rmdir()
    log.info("prepared %s: %s", folder, {split: len(pairs) for split, pairs in kept.items()})
    return folder


def prepare_synthetic(task: str, tasks_dir: Path, log: Callable[[str], None] | None = None) -> Path | None:
    """Build a registered synthetic task (no download, no ``--source``) in its default mode when its folder is not
    in ``tasks_dir`` yet; return the folder, or ``None`` when ``task`` names no synthetic task or it is there."""
    try:
        spec = get_spec(task)
    except KeyError:
        return None
    if not spec.synthetic or (tasks_dir / spec.folder_name() / METADATA_FILENAME).is_file():
        return None
    if log:
        log(f"preparing {spec.name} in {tasks_dir} (synthetic: no download, a few seconds)")
    return prepare_task(spec, tasks_dir)
