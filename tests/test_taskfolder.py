"""Task folders: loading, validation that reports every problem with its path, and the resampling cache."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from evaluation.taskfolder import RESAMPLED_RECORD, TaskFolder, TaskFolderError
from tasks.hear_format import PREPARE_PENDING
from tasks.pipeline import prepare_task
from tasks.registry import get_spec

REFERENCE_TARBALL = "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"


@pytest.fixture
def digits(spoken_digit_task: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared spoken_digit task (16 kHz) to break."""
    return Path(shutil.copytree(spoken_digit_task, tmp_path / spoken_digit_task.name))


@pytest.fixture
def reference_44k(data_dir: Path, tmp_path: Path) -> Path:
    """The real hear-preprocess output (spoken_digit small, 44.1 kHz only), unpacked."""
    with tarfile.open(data_dir / "hear_reference" / REFERENCE_TARBALL) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "hear-2021.0.6" / "tasks" / "spoken_digit-1.0.9-small"


def _problems(error: pytest.ExceptionInfo[TaskFolderError]) -> str:
    return "\n".join(error.value.problems)


def test_prepared_task_loads_and_every_clip_checks(spoken_digit_task: Path):
    folder = TaskFolder.load(spoken_digit_task)
    assert folder.splits == [f"fold{i:02d}" for i in range(5)]
    assert folder.label_vocabulary == [str(d) for d in range(10)]
    assert folder.sample_rates() == folder.original_rates() == [16000]
    lengths = folder.check_audio(16000)
    assert sum(len(files) for files in lengths.values()) == 100
    expected = round(folder.metadata["sample_duration"] * 16000)
    assert {n for files in lengths.values() for n in files.values()} == {expected}
    assert folder.audio_dir(16000) == spoken_digit_task / "16000"


def test_every_metadata_and_label_problem_is_reported(digits: Path):
    fold01 = json.loads((digits / "fold01.json").read_text())
    first, second = sorted(fold01)[:2]
    fold01[first] = [42]  # outside the vocabulary
    fold01[second] = [1, 2]  # two labels on a multiclass clip
    (digits / "fold01.json").write_text(json.dumps(fold01))
    (digits / "fold02.json").unlink()
    (digits / "fold03.json").write_text("{not json")
    with pytest.raises(TaskFolderError) as error:
        TaskFolder.load(digits)
    text = _problems(error)
    assert f"{digits / 'fold01.json'} [{first}]: label 42 is not in the label vocabulary" in text
    assert f"{digits / 'fold01.json'} [{second}]: a multiclass clip needs exactly one label" in text
    assert f"{digits / 'fold02.json'}: missing" in text
    assert f"{digits / 'fold03.json'}: not readable JSON" in text
    assert len(error.value.problems) == 4
    assert str(digits) in str(error.value)


def test_metadata_and_vocabulary_problems_are_reported(digits: Path):
    metadata = json.loads((digits / "task_metadata.json").read_text())
    del metadata["evaluation"]
    metadata["embedding_type"] = "clip"
    (digits / "task_metadata.json").write_text(json.dumps(metadata))
    (digits / "labelvocabulary.csv").write_text("idx,label\n0,0\n2,1\n")
    with pytest.raises(TaskFolderError) as error:
        TaskFolder.load(digits)
    text = _problems(error)
    assert f"{digits / 'task_metadata.json'}: missing key(s) evaluation" in text
    assert f"{digits / 'task_metadata.json'}: embedding_type is 'clip'" in text
    assert f"{digits / 'labelvocabulary.csv'}:3: expected '1,<label>'" in text


def test_a_file_in_two_splits_and_a_boolean_duration_are_reported(digits: Path):
    fold00, fold03 = (json.loads((digits / f"fold0{k}.json").read_text()) for k in (0, 3))
    leaked = sorted(fold00)[:2]
    fold03.update({name: fold00[name] for name in leaked})
    (digits / "fold03.json").write_text(json.dumps(fold03))
    with pytest.raises(TaskFolderError) as error:
        TaskFolder.load(digits)
    assert error.value.problems == [
        f"{digits / 'fold00.json'} and {digits / 'fold03.json'} both list {', '.join(leaked)}"]
    metadata = json.loads((digits / "task_metadata.json").read_text())
    metadata["sample_duration"] = True
    (digits / "task_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(TaskFolderError) as error:
        TaskFolder.load(digits)
    assert error.value.problems == [
        f"{digits / 'task_metadata.json'}: sample_duration must be a positive number of seconds or null, got True"]


def test_an_unfinished_prepare_is_reported(digits: Path):
    """Adding a rate to a prepared folder and being interrupted leaves a rate folder that looks original."""
    (digits / PREPARE_PENDING).write_bytes(b"{}")
    with pytest.raises(TaskFolderError) as error:
        TaskFolder.load(digits)
    assert error.value.problems == [f"{digits / PREPARE_PENDING}: a `hear-atst prepare` run of this folder did not "
                                    "finish (its audio may be incomplete); run the same command again to finish it"]


def test_every_audio_problem_is_reported_with_its_path(digits: Path):
    folder = TaskFolder.load(digits)
    audio = digits / "16000"
    names = sorted(folder.labels["fold00"])
    good, _ = sf.read(audio / "fold00" / names[0], dtype="float32")
    (audio / "fold00" / names[0]).unlink()
    sf.write(audio / "fold00" / names[1], np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    (audio / "fold00" / names[2]).write_bytes(b"RIFF not really a wav file")
    sf.write(audio / "fold00" / names[3], good[::2], 8000, subtype="PCM_16")
    with_nan = good.copy()
    with_nan[10] = np.nan
    sf.write(audio / "fold00" / names[4], with_nan, 16000, subtype="FLOAT")
    sf.write(audio / "fold00" / names[5], np.stack([good, good], axis=1), 16000, subtype="PCM_16")
    sf.write(audio / "fold01" / "stray.wav", good, 16000, subtype="PCM_16")
    with pytest.raises(TaskFolderError) as error:
        folder.check_audio(16000)
    text = _problems(error)
    clip = [audio / "fold00" / name for name in names]
    assert f"{clip[0]}: missing (listed in the split file)" in text
    assert f"{clip[1]}: audio file holds no samples" in text
    assert f"{clip[2]}: cannot decode audio" in text
    assert f"{clip[3]}: sample rate 8000 Hz in the 16000 Hz folder" in text
    assert f"{clip[4]}: holds NaN or infinite samples" in text
    assert f"{clip[5]}: 2 channels, expected mono" in text
    assert f"{audio / 'fold01' / 'stray.wav'}: wav file not listed in {digits / 'fold01.json'}" in text
    assert len(error.value.problems) == 7


def test_event_problems_are_reported(dcase2016_small_task: Path, tmp_path: Path):
    task = Path(shutil.copytree(dcase2016_small_task, tmp_path / dcase2016_small_task.name))
    train = json.loads((task / "train.json").read_text())
    name = sorted(train)[0]
    train[name] = [
        {"label": "laser", "start": 100.0, "end": 200.0},
        {"label": "speech", "start": 900.0, "end": 800.0},
        {"label": "speech", "start": float("nan"), "end": 800.0},
        {"label": "speech", "start": 100.0},
        *train[name],
    ]
    (task / "train.json").write_text(json.dumps(train))
    with pytest.raises(TaskFolderError) as error:
        TaskFolder.load(task)
    where = f"{task / 'train.json'} [{name}]"
    text = _problems(error)
    assert f"{where}: label 'laser' is not in the label vocabulary" in text
    assert f"{where}: event needs 0 <= start <= end" in text
    assert f"{where}: event times must be finite numbers of ms" in text
    assert f"{where}: an event must be {{label, start, end}}" in text
    assert len(error.value.problems) == 4


def test_missing_rate_is_resampled_from_the_44k_archive_and_cached(reference_44k: Path):
    folder = TaskFolder.load(reference_44k)
    assert folder.sample_rates() == [44100]
    target = folder.audio_dir(16000)
    assert target == reference_44k / "16000"
    record = json.loads((target / RESAMPLED_RECORD).read_text())
    assert record["source_rate"] == 44100 and record["complete"] is True
    assert folder.sample_rates() == [16000, 44100] and folder.original_rates() == [44100]
    lengths = folder.check_audio(16000)
    for split, files in folder.labels.items():
        assert sorted(lengths[split]) == sorted(files)
        for name in files:
            source, _ = sf.read(reference_44k / "44100" / split / name, dtype="float32")
            written, rate = sf.read(target / split / name, dtype="int16")
            assert rate == 16000 and written.shape == (16000,)  # 1 s clips: round(44100 * 16000 / 44100)
            expected = soxr.resample(source, 44100, 16000, quality="HQ")
            np.testing.assert_array_equal(written, np.clip(np.rint(expected * 32768), -32768, 32767))

    stamps = {p: p.stat().st_mtime_ns for p in target.rglob("*.wav")}
    assert folder.audio_dir(16000) == target
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*.wav")} == stamps  # cached: nothing rewritten

    # An interrupted resampling (record incomplete, some files missing) is not used, and resumes.
    removed = sorted(stamps)[:3]
    before = {p: p.read_bytes() for p in removed}
    for path in removed:
        path.unlink()
    (target / RESAMPLED_RECORD).write_text(json.dumps({**record, "complete": False}))
    assert folder.sample_rates() == [44100]
    folder.audio_dir(16000)
    assert {p: p.read_bytes() for p in removed} == before
    assert all(p.stat().st_mtime_ns == stamps[p] for p in stamps if p not in removed)

    # A finished resampling is rechecked against its sources: a replaced source file is resampled again, alone.
    record = json.loads((target / RESAMPLED_RECORD).read_text())
    assert sorted(record["sources"]) == sorted(f"{s}/{n}" for s, files in folder.labels.items() for n in files)
    changed = sorted(stamps)[5]
    source = reference_44k / "44100" / changed.relative_to(target)
    audio, _ = sf.read(source, dtype="int16")
    sf.write(source, (audio // 3).astype(np.int16), 44100, subtype="PCM_16")
    stamps = {p: p.stat().st_mtime_ns for p in target.rglob("*.wav")}
    notes: list[str] = []
    assert folder.audio_dir(16000, note=notes.append) == target
    assert notes == [f"1 clip(s) of {target} were resampled from source files that changed since (or from "
                     "unrecorded ones): resampling them again"]
    assert [p for p in stamps if p.stat().st_mtime_ns != stamps[p]] == [changed]
    expected = soxr.resample(sf.read(source, dtype="float32")[0], 44100, 16000, quality="HQ")
    np.testing.assert_array_equal(sf.read(changed, dtype="int16")[0],
                                  np.clip(np.rint(expected * 32768), -32768, 32767))

    (target / RESAMPLED_RECORD).write_text('{"complete": tr')  # a damaged record is named, not guessed at
    with pytest.raises(TaskFolderError, match="unreadable resampling record") as error:
        folder.sample_rates()
    assert str(target / RESAMPLED_RECORD) in _problems(error)


def test_the_source_is_the_nearest_original_rate_not_below_the_target(fsdd_source: Path, tmp_path: Path):
    """32 kHz from 48 kHz, not from the nearer 22.05 kHz, whose audio stops at 11 kHz; above every original rate,
    from the highest."""
    task = prepare_task(get_spec("spoken_digit"), tmp_path, source=fsdd_source, sample_rates=(22050, 48000),
                        mode="small")
    folder = TaskFolder.load(task)
    for rate, source in ((44100, 48000), (16000, 22050), (32000, 48000), (96000, 48000)):
        record = json.loads((folder.audio_dir(rate) / RESAMPLED_RECORD).read_text())
        assert record["source_rate"] == source
    assert folder.original_rates() == [22050, 48000]
    assert folder.sample_rates() == [16000, 22050, 32000, 44100, 48000, 96000]
    folder.check_audio(44100)


def test_broken_source_audio_stops_resampling(reference_44k: Path):
    folder = TaskFolder.load(reference_44k)
    victim = sorted((reference_44k / "44100" / "fold02").glob("*.wav"))[0]
    victim.write_bytes(b"")
    with pytest.raises(TaskFolderError, match=r"cannot decode audio|holds no samples") as error:
        folder.audio_dir(16000)
    assert str(victim) in str(error.value)
    assert not (reference_44k / "16000").exists()
