"""hear-preprocess's deterministic primitives (hear_preprocess.md §3) and the audio I/O of tasks.audio."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tasks.audio import AudioError, fit_length, read_audio, resample, resampled_length, to_mono, write_wav_pcm16
from tasks.hear_rng import array_split, pandas_permutation, shuffle_rows, shuffled, str2int
from tasks.pipeline import (
    PrepareError,
    hear_json,
    label_vocabulary_csv,
    split_k_folds,
    split_train_test_val,
    subsample,
    trim_events,
)

# hear_preprocess.md §3: every seed the package derives with str2int.
SPEC_SEEDS = {
    "postprocess_all_metadata": 2558623514,
    "SubsampleSplit(train)": 3488948419,
    "SubsampleSplit(valid)": 3511819133,
    "SubsampleSplit(test)": 2920447107,
    "SubsampleSplit(fold00)": 643493686,
    "SubsampleSplit(fold04)": 1642250788,
    "SubsampleSplit(fold09)": 671306333,
}


@pytest.mark.parametrize(("text", "seed"), SPEC_SEEDS.items())
def test_str2int_matches_the_documented_seeds(text: str, seed: int) -> None:
    assert str2int(text) == seed


def test_row_shuffle_is_pandas_sample() -> None:
    frame = pd.DataFrame({"a": range(37), "b": [f"x{i}" for i in range(37)]})
    expected = frame.sample(frac=1, random_state=str2int("postprocess_all_metadata")).reset_index(drop=True)
    pd.testing.assert_frame_equal(shuffle_rows(frame, "postprocess_all_metadata"), expected)
    assert sorted(pandas_permutation(10, 1)) == list(range(10))


def test_shuffled_is_python_random_with_a_string_seed() -> None:
    keys = [f"k{i:03d}" for i in range(50)]
    expected = list(keys)
    random.Random("split_k_folds").shuffle(expected)
    assert shuffled(keys, "split_k_folds") == expected
    assert shuffled(keys, "split_k_folds_retry_0") != expected
    assert keys == sorted(keys)  # the input is not modified


@pytest.mark.parametrize(("n", "k"), [(100, 5), (972, 5), (7438, 5), (3, 5), (11, 3)])
def test_array_split_is_numpy_array_split(n: int, k: int) -> None:
    items = list(range(n))
    assert array_split(items, k) == [list(chunk) for chunk in np.array_split(items, k)]


def test_split_train_test_val_uses_banker_rounding_and_relabels_by_key() -> None:
    # 72 keys at 20/20: round(14.4) = 14 each; keys are sorted then shuffled with the string seed.
    stems = [f"s{i:02d}" for i in range(72)]
    meta = pd.DataFrame({"unique_filestem": stems, "split_key": stems, "split": "train", "label": "x"})
    config = {"task_name": "t", "split_percentage": {"valid": 20, "test": 20, "train": 60}}
    out = split_train_test_val(meta, config)
    order = list(stems)
    random.Random("split_train_test_val").shuffle(order)
    assert set(out.loc[out["split"] == "valid", "split_key"]) == set(order[:14])
    assert set(out.loc[out["split"] == "test", "split_key"]) == set(order[14:28])
    # 25 keys at the default 80/10/10 with valid and test missing: round(2.5) = 2 (ties to even).
    meta25 = meta.head(25)
    counts = split_train_test_val(meta25, {"task_name": "t"})["split"].value_counts()
    assert (counts["valid"], counts["test"], counts["train"]) == (2, 2, 21)


def test_subsample_budget_counts_files_in_seeded_order() -> None:
    stems = [f"c{i:03d}" for i in range(40)]
    meta = pd.DataFrame({"unique_filestem": stems, "relpath": [f"/x/{s}.wav" for s in stems],
                         "split": ["train"] * 30 + ["valid"] * 5 + ["test"] * 5})
    config = {"splits": ["train", "valid", "test"], "split_mode": "trainvaltest", "sample_duration": 1.0,
              "max_task_duration_by_split": {"train": 12.9, "valid": None, "test": None}}
    kept = subsample(meta, config)
    expected = [stems[i] for i in pandas_permutation(30, str2int("SubsampleSplit(train)"))][:12]
    assert [stem for stem, _ in kept["train"]] == expected
    assert len(kept["valid"]) == len(kept["test"]) == 5


def test_an_empty_split_is_an_error_naming_it() -> None:
    """hear-preprocess stops on a split without audio; so does the pipeline (here: 3 keys for 5 folds)."""
    meta = pd.DataFrame({"unique_filestem": ["a", "b", "c"], "relpath": ["/x/a.wav", "/x/b.wav", "/x/c.wav"],
                         "split_key": ["a", "b", "c"], "label": ["x", "x", "x"]})
    config = {"task_name": "t", "nfolds": 5, "mode": "small", "embedding_type": "scene",
              "prediction_type": "multiclass", "split_mode": "new_split_kfold", "sample_duration": 1.0,
              "splits": [f"fold{i:02d}" for i in range(5)], "max_task_duration_by_fold": None}
    with pytest.raises(PrepareError, match="t: no files in fold03, fold04"):
        subsample(split_k_folds(meta, config), config)


def test_trim_events_drops_late_starts_and_clips_ends() -> None:
    meta = pd.DataFrame({"unique_filestem": ["a", "a", "a"], "start": [100.0, 29000.0, 30000.0],
                         "end": [200.0, 31000.0, 31000.0], "label": ["x", "y", "z"]})
    out = trim_events(meta, 30.0)
    assert out[["start", "end", "label"]].values.tolist() == [[100.0, 200.0, "x"], [29000.0, 30000.0, "y"]]


def test_hear_json_and_vocabulary_formats() -> None:
    assert hear_json({"a.wav": [8]}) == b'{\n "a.wav": [\n  8\n ]\n}'
    assert label_vocabulary_csv({10, 2, 1}) == b"idx,label\n0,1\n1,2\n2,10\n"
    assert label_vocabulary_csv({"b", "_a", "A"}) == b"idx,label\n0,A\n1,_a\n2,b\n"


def test_resampled_lengths_follow_ffmpeg() -> None:
    assert resampled_length(8000, 8000, 44100) == 44100
    assert resampled_length(35721, 44100, 22050) == 17861  # 17860.5 rounds up
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    out = resample(tone, 8000, 16000)
    assert out.shape == (16000,) and out.dtype == np.float32
    assert np.corrcoef(out[::2][100:-100], tone[100:-100])[0, 1] > 0.999
    assert resample(tone, 8000, 8000) is tone


def test_fit_length_and_to_mono() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fit_length(x, 2).tolist() == [[0, 1], [3, 4]]
    assert fit_length(x, 4).tolist() == [[0, 1, 2, 0], [3, 4, 5, 0]]
    assert to_mono(x).tolist() == [1.5, 2.5, 3.5]


def test_write_and_read_pcm16_round_trip(tmp_path: Path) -> None:
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    path = tmp_path / "a" / "x.wav"
    write_wav_pcm16(path, samples.astype(np.float32) / 32768, 16000)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert sf.read(str(path), dtype="int16")[0].tolist() == samples.tolist()
    audio, sr = read_audio(path)
    assert sr == 16000 and audio.ndim == 1 and audio.dtype == np.float32
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_read_audio_names_bad_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match=r"corrupt\.wav"):
        read_audio(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"empty\.wav: audio file holds no samples"):
        read_audio(empty)
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        read_audio(tmp_path / "missing.wav")


def _wav(frames: int, channels: int = 1, bits: int = 16, rate: int = 16000, block_align: int | None = None,
         byte_rate: int | None = None, data_size: int | None = None) -> bytes:
    """A RIFF/WAVE PCM file built by hand from the format's definition (zeros as samples)."""
    import struct

    align = channels * bits // 8 if block_align is None else block_align
    data = bytes(frames * channels * bits // 8)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align if byte_rate is None else byte_rate, align, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("data, problem", [
    (_wav(32000)[:44 + 3200], "truncated WAV: the header promises 32000 frames (64000 bytes), the file holds 1600 "
                              "(3200 bytes)"),
    (_wav(100, block_align=4), "WAV header lies about the format: PCM, 1 channel(s) of 16 bits need 2-byte frames "
                               "and 32000 bytes/s, the header says 4-byte frames and 64000 bytes/s"),
    (_wav(100, byte_rate=8000), "WAV header lies about the format: PCM, 1 channel(s) of 16 bits need 2-byte frames "
                                "and 32000 bytes/s, the header says 2-byte frames and 8000 bytes/s"),
    (_wav(100, data_size=199), "WAV header: a data chunk of 199 bytes is no whole number of 2-byte frames"),
])
def test_a_wav_whose_header_lies_is_refused_naming_the_file(data: bytes, problem: str, tmp_path: Path) -> None:
    """libsndfile decodes such files silently (a truncated 2 s file as 0.1 s of audio); read_audio refuses them."""
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    with pytest.raises(AudioError) as caught:
        read_audio(path)
    assert str(caught.value) == f"{path}: {problem}"
    path.write_bytes(_wav(100))  # the honest file decodes
    assert read_audio(path)[0].shape == (100,)
