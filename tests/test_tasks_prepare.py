"""Prepared task folders from real data in the official layouts, checked against the hear-preprocess rules.

Splits, labels, stems and durations are re-derived here from the source files (not from tasks.*).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def _vocabulary(folder: Path) -> list[str]:
    lines = (folder / "labelvocabulary.csv").read_text().splitlines()
    assert lines[0] == "idx,label"
    rows = [line.split(",", 1) for line in lines[1:]]
    assert [int(i) for i, _ in rows] == list(range(len(rows)))
    return [label for _, label in rows]


def _check_audio(folder: Path, split: str, names: set[str], n_samples: int) -> None:
    split_dir = folder / str(SR) / split
    assert {p.name for p in split_dir.iterdir()} == names
    for path in sorted(split_dir.iterdir())[:25]:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", n_samples), path


def test_esc10_follows_the_esc50_folds(esc10_task: Path, esc50_layout: Path) -> None:
    assert esc10_task.name == "esc50-v2.0.0-small"
    meta = json.loads((esc10_task / "task_metadata.json").read_text())
    assert meta["splits"] == [f"fold{i:02d}" for i in range(5)] and meta["sample_duration"] == 2
    assert meta["evaluation"][0] == "top1_acc"
    with open(esc50_layout / "ESC-50-master" / "meta" / "esc50.csv") as handle:
        rows = list(csv.DictReader(handle))
    expected: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        expected.setdefault(f"fold{int(row['fold']) - 1:02d}", {})[row["filename"]] = [row["category"]]
    for fold, clips in expected.items():
        assert _json(esc10_task, f"{fold}.json") == dict(sorted(clips.items()))
        assert len(clips) == 80
        _check_audio(esc10_task, fold, set(clips), 2 * SR)
    assert _vocabulary(esc10_task) == sorted({row["category"] for row in rows})


def test_speech_commands_small_follows_the_official_lists(speech_commands_task: Path,
                                                          speech_commands_source: Path) -> None:
    train_root = speech_commands_source / "speech_commands_v0.02-small"
    test_root = speech_commands_source / "speech_commands_test_set_v0.02-small"
    words = {"down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"}

    def label(folder: str) -> str:
        return folder if folder in words or folder == "_silence_" else "_unknown_"

    valid_list = set((train_root / "validation_list.txt").read_text().split())
    test_list = set((train_root / "testing_list.txt").read_text().split())
    clips = {str(p.relative_to(train_root)) for p in train_root.glob("[!_]*/*.wav")}
    train = {f"{Path(c).parent.name}_{Path(c).stem}.wav": [label(Path(c).parent.name)]
             for c in clips - valid_list - test_list}
    valid = {f"{Path(c).parent.name}_{Path(c).stem}.wav": [label(Path(c).parent.name)] for c in clips & valid_list}
    noise, _ = sf.read(str(train_root / "_background_noise_" / "running_tap.wav"), dtype="int16")
    starts = range(0, len(noise) - SR, SR // 2)
    valid.update({f"_silence__running_tap-{s}.wav": ["_silence_"] for s in starts})
    test = {f"{p.parent.name}_{p.stem}.wav": [label(p.parent.name)] for p in test_root.glob("*/*.wav")}

    assert _json(speech_commands_task, "train.json") == dict(sorted(train.items()))
    assert _json(speech_commands_task, "valid.json") == dict(sorted(valid.items()))
    assert _json(speech_commands_task, "test.json") == dict(sorted(test.items()))
    assert (len(train), len(valid), len(test)) == (56, 132, 96)
    assert _vocabulary(speech_commands_task) == ["_silence_", "_unknown_", *sorted(words)]
    _check_audio(speech_commands_task, "valid", set(valid), SR)
    # A silence slice is the noise samples themselves.
    sliced, _ = sf.read(str(speech_commands_task / str(SR) / "valid" / "_silence__running_tap-8000.wav"), dtype="int16")
    np.testing.assert_array_equal(sliced, noise[8000:8000 + SR])


def test_voxceleb1_uses_iden_split_and_keeps_the_audio(voxceleb1_task: Path, voxceleb1_layout: Path) -> None:
    root = voxceleb1_layout / "vox1"
    names = {"1": "train", "2": "valid", "3": "test"}
    expected: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}, "test": {}}
    for line in (root / "iden_split.txt").read_text().splitlines():
        number, rel = line.split()
        speaker, video, utt = rel[:-4].split("/")
        expected[names[number]][f"{speaker}_{video}_{utt}.wav"] = [speaker]
    for split, clips in expected.items():
        assert _json(voxceleb1_task, f"{split}.json") == dict(sorted(clips.items()))
        _check_audio(voxceleb1_task, split, set(clips), 2 * SR)
    assert [len(c) for c in expected.values()] == [98, 34, 33]
    assert _vocabulary(voxceleb1_task) == [f"id1{i:04d}" for i in range(1, 11)]
    # 16 kHz in, 16 kHz out: the clip is the first 2 s of the source, sample for sample (zero-padded if shorter).
    train_files = [line.split()[1] for line in (root / "iden_split.txt").read_text().splitlines() if line[0] == "1"]
    for rel in train_files[::20]:
        source, _ = sf.read(str(root / "wav" / rel), dtype="int16")
        out, _ = sf.read(str(voxceleb1_task / str(SR) / "train" / (rel[:-4].replace("/", "_") + ".wav")), dtype="int16")
        head = source[: 2 * SR]
        np.testing.assert_array_equal(out, np.pad(head, (0, 2 * SR - len(head))))


def test_dcase2016_pools_dev_and_eval_and_resplits_60_20_20(dcase2016_small_task: Path,
                                                            dcase2016_small_layout: Path) -> None:
    scenes = {}
    for folder in [dcase2016_small_layout / "dcase2016_task2_train_dev" / "dcase2016_task2_dev" / "annotation",
                        dcase2016_small_layout / "dcase2016_task2_test_public" / "annotation"]:
        for path in folder.glob("*.txt"):
            events = []
            for line in path.read_text().splitlines():
                onset, offset, label = line.split("\t")
                start, end = float(onset) * 1000, float(offset) * 1000
                if start < 30000.0:
                    events.append((label, start, min(end, 30000.0)))
            scenes[path.stem] = events
    assert len(scenes) == 72
    order = sorted(scenes)
    random.Random("split_train_test_val").shuffle(order)
    splits = {"valid": set(order[:14]), "test": set(order[14:28]), "train": set(order[28:])}
    labels = set()
    for split, stems in splits.items():
        got = _json(dcase2016_small_task, f"{split}.json")
        assert set(got) == {f"{s}.wav" for s in stems}
        for stem in stems:
            events = got[f"{stem}.wav"]
            assert all(list(e) == ["label", "start", "end"] for e in events)
            assert Counter((e["label"], e["start"], e["end"]) for e in events) == Counter(scenes[stem])
            labels |= {e["label"] for e in events}
        _check_audio(dcase2016_small_task, split, {f"{s}.wav" for s in stems}, 30 * SR)
    assert _vocabulary(dcase2016_small_task) == sorted(labels)
    assert len(labels) == 11


def test_spoken_digit_small_is_hears_small_subset(spoken_digit_task: Path, fsdd_source: Path) -> None:
    keys = sorted(p.stem for p in (fsdd_source / "recordings").glob("*.wav") if "_lucas_" not in p.stem)
    ranked = sorted(keys, key=lambda k: int(hashlib.md5(b"train" + k.encode()).hexdigest(), 16))
    assert ranked[:3] == ["2_nicolas_23", "1_nicolas_0", "9_theo_30"]  # hear_preprocess.md §8.4
    index = {f"tfds_id_spoken-digit-train-tfrecord-00000-of-00001-{i}.wav": k for i, k in enumerate(ranked)}
    names = []
    for fold in range(5):
        clips = _json(spoken_digit_task, f"fold{fold:02d}.json")
        assert len(clips) == 20
        for name, label in clips.items():
            assert label == [int(index[name].split("_")[0])]  # integer labels after the CSV round trip
        _check_audio(spoken_digit_task, f"fold{fold:02d}", set(clips), round(0.56 * SR))
        names += sorted(clips)
    order = sorted(names)
    random.Random("split_k_folds").shuffle(order)
    for fold in range(5):
        assert set(_json(spoken_digit_task, f"fold{fold:02d}.json")) == set(order[20 * fold: 20 * fold + 20])
    assert _vocabulary(spoken_digit_task) == [str(d) for d in range(10)]
    # The clip is the FSDD recording (8 kHz) resampled: same duration and correlated with it.
    name = sorted(_json(spoken_digit_task, "fold00.json"))[0]
    source, _ = sf.read(str(fsdd_source / "recordings" / f"{index[name]}.wav"), dtype="float32")
    out, _ = sf.read(str(spoken_digit_task / str(SR) / "fold00" / name), dtype="float32")
    n = min(len(source), 4480)
    assert np.corrcoef(out[: 2 * n : 2][50:-50], source[:n][50:-50])[0, 1] > 0.99


@pytest.mark.slow
def test_spoken_digit_full_has_2500_clips_in_5_folds(fsdd_source: Path, tmp_path: Path) -> None:
    from tasks.pipeline import prepare_task
    from tasks.registry import get_spec

    folder = prepare_task(get_spec("spoken_digit"), tmp_path, source=fsdd_source, sample_rates=(SR,), mode="full")
    fold00 = _json(folder, "fold00.json")
    keys = sorted(p.stem for p in (fsdd_source / "recordings").glob("*.wav") if "_lucas_" not in p.stem)
    ranked = sorted(keys, key=lambda k: int(hashlib.md5(b"train" + k.encode()).hexdigest(), 16))
    speakers = Counter(ranked[int(name[:-4].rsplit("-", 1)[1])].split("_")[1] for name in fold00)
    # hear_preprocess.md §9: fold00 of 2021.1.1 full mode.
    assert speakers == {"george": 106, "jackson": 107, "nicolas": 102, "theo": 95, "yweweler": 90}
    for fold in range(5):
        assert len(_json(folder, f"fold{fold:02d}.json")) == 500
        assert {v[0] for v in _json(folder, f"fold{fold:02d}.json").values()} == set(range(10))
