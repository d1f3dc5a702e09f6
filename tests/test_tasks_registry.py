"""The reference HEAR tarball, task lookup, the CLI, and preparation errors / idempotence / resume."""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import os
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tasks import pipeline, spoken_digit
from tasks.commands import register
from tasks.download import Source, SourceError, fetch, unpack
from tasks.hear_format import PREPARE_PENDING
from tasks.pipeline import PrepareError, prepare_task, write_clips
from tasks.registry import (
    DEFAULT_TASKS_DIR,
    TASKS_DIR_ENV,
    default_tasks_dir,
    get_spec,
    list_task_folders,
    resolve_task_folder,
)

REFERENCE = "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"
REFERENCE_FILES = ["task_metadata.json", "labelvocabulary.csv"] + [f"fold{i:02d}.json" for i in range(5)]


@pytest.fixture(scope="module")
def reference_task(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    with tarfile.open(data_dir / "hear_reference" / REFERENCE) as tar:
        tar.extractall(out, filter="data")
    return out / "hear-2021.0.6" / "tasks" / "spoken_digit-1.0.9-small"


def test_spoken_digit_small_reproduces_the_hear_reference(reference_task: Path, fsdd_source: Path,
                                                          tmp_path: Path) -> None:
    spec = dataclasses.replace(get_spec("spoken_digit"), config=spoken_digit.CONFIG_2021_0_6)
    folder = prepare_task(spec, tmp_path, source=fsdd_source, sample_rates=(44100,), mode="small")
    assert folder.name == reference_task.name
    for name in REFERENCE_FILES:
        assert (folder / name).read_bytes() == (reference_task / name).read_bytes(), name
    for fold in range(5):
        ours = sorted(os.listdir(folder / "44100" / f"fold{fold:02d}"))
        assert ours == sorted(os.listdir(reference_task / "44100" / f"fold{fold:02d}"))
        assert len(ours) == 20


def test_current_config_differs_only_in_duration_and_url(spoken_digit_task: Path, reference_task: Path) -> None:
    ours = json.loads((spoken_digit_task / "task_metadata.json").read_text())
    ref = json.loads((reference_task / "task_metadata.json").read_text())
    assert list(ours) == list(ref)
    assert ours["sample_duration"] == 0.56 and ref["sample_duration"] == 1.0
    assert ours["download_urls"][0]["url"].replace("hearbenchmark", "neuralaudio") == ref["download_urls"][0]["url"]
    for name in REFERENCE_FILES[1:]:
        assert (spoken_digit_task / name).read_bytes() == (reference_task / name).read_bytes(), name


def test_resolve_task_folder(esc10_task: Path, spoken_digit_task: Path, reference_task: Path, tmp_path: Path) -> None:
    tasks_dir = esc10_task.parent
    assert resolve_task_folder("esc50", tasks_dir) == esc10_task
    assert resolve_task_folder("esc50-v2.0.0-small", tasks_dir) == esc10_task
    assert resolve_task_folder("fsdd", tasks_dir) == spoken_digit_task
    assert resolve_task_folder("spoken_digit", tasks_dir, mode="small") == spoken_digit_task
    with pytest.raises(LookupError, match=r"hear-atst prepare esc50 --source PATH .* --mode full"):
        resolve_task_folder("esc50", tasks_dir, mode="full")
    with pytest.raises(LookupError, match="not registered"):
        resolve_task_folder("maestro", tasks_dir)
    # A HEAR folder from the official archives is found by folder name and by its task_name; two -> ambiguous.
    shutil.copytree(reference_task, tmp_path / reference_task.name)
    assert resolve_task_folder("spoken_digit-1.0.9-small", tmp_path) == tmp_path / reference_task.name
    shutil.copytree(reference_task, tmp_path / "spoken_digit-1.0.9-full")
    with pytest.raises(LookupError, match="several task folders"):
        resolve_task_folder("spoken_digit", tmp_path)
    assert [f.name for f in list_task_folders(tmp_path)] == ["spoken_digit-1.0.9-full", "spoken_digit-1.0.9-small"]


def _task_folder(folder: Path, task_name: str, mode: str, rates: dict[str, bool | None]) -> Path:
    """A synthetic task folder: metadata only, plus the rate folders (``None`` = written by hear-preprocess,
    ``True``/``False`` = resampled here, finished or not)."""
    folder.mkdir(parents=True)
    metadata = {"task_name": task_name, "mode": mode, "embedding_type": "scene", "prediction_type": "multiclass",
                "split_mode": "trainvaltest", "splits": ["train", "valid", "test"], "evaluation": ["top1_acc"]}
    (folder / "task_metadata.json").write_text(json.dumps(metadata))
    for rate, complete in rates.items():
        (folder / rate).mkdir()
        if complete is not None:
            (folder / rate / ".resampled.json").write_text(json.dumps({"source_rate": 48000, "complete": complete}))
    return folder


def test_official_archive_layout_is_found(tmp_path: Path) -> None:
    # hear-<version>-<folder>-<rate>.tar.gz unpacks to hear-<version>/tasks/<folder>/ (hear_eval.md §2)
    official = _task_folder(tmp_path / "hear-2021.0.6" / "tasks" / "beijing_opera-v1.0-hear2021-full",
                            "beijing_opera", "full", {"48000": None})
    prepared = _task_folder(tmp_path / "esc50-v2.0.0-full", "esc50", "full", {"16000": None})
    (tmp_path / "hear-2021.0.6" / "tasks" / "notes").mkdir()  # no task_metadata.json: not a task folder
    (tmp_path / "_downloads" / "deep" / "tasks" / "x").mkdir(parents=True)
    (tmp_path / "_downloads" / "deep" / "tasks" / "x" / "task_metadata.json").write_text("{}")  # too deep: ignored
    assert list_task_folders(tmp_path) == [official, prepared]
    assert resolve_task_folder("beijing_opera-v1.0-hear2021-full", tmp_path) == official
    assert resolve_task_folder("beijing_opera", tmp_path) == official
    assert resolve_task_folder("esc50", tmp_path) == prepared


def test_the_same_task_twice_is_an_error_naming_both_paths(tmp_path: Path) -> None:
    official = _task_folder(tmp_path / "hear-2021.0.6" / "tasks" / "esc50-v2.0.0-full", "esc50", "full",
                            {"48000": None})
    prepared = _task_folder(tmp_path / "esc50-v2.0.0-full", "esc50", "full", {"16000": None})
    other = _task_folder(tmp_path / "spoken_digit-1.0.9-full", "spoken_digit", "full", {"16000": None})
    assert list_task_folders(tmp_path) == [prepared, official, other]
    for name in ("esc50", "esc50-v2.0.0-full"):
        with pytest.raises(LookupError, match=r"esc50-v2\.0\.0-full found more than once") as error:
            resolve_task_folder(name, tmp_path)
        assert f"{prepared} and {official}; keep one" in str(error.value)
    assert resolve_task_folder("spoken_digit", tmp_path) == other  # other tasks are still found
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["tasks", "--tasks-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "warning: esc50-v2.0.0-full is found more than once" in result.output
    result = CliRunner().invoke(app, ["tasks", "--tasks-dir", str(tmp_path / "absent")], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and f"warning: {tmp_path / 'absent'} is not a directory" in result.output
    shutil.rmtree(other)
    # the same task_name in two folders (two modes, or two unpackings) stays ambiguous when looked up by task_name
    shutil.rmtree(prepared)
    small = _task_folder(tmp_path / "esc50-v2.0.0-small", "esc50", "small", {"16000": None})
    with pytest.raises(LookupError, match="several task folders") as error:
        resolve_task_folder("esc50", tmp_path)
    assert f"{official}, {small}" in str(error.value)
    assert resolve_task_folder("esc50", tmp_path, mode="full") == official


def test_cli_tasks_shows_complete_rates_only(tmp_path: Path) -> None:
    """``tasks`` and :meth:`TaskFolder.sample_rates` agree: an unfinished resampling is not a prepared rate."""
    _task_folder(tmp_path / "hear-2021.0.6" / "tasks" / "beijing_opera-v1.0-hear2021-full", "beijing_opera", "full",
                 {"48000": None, "16000": False, "22050": True})
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["tasks", "--tasks-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "hear-2021.0.6/tasks/beijing_opera-v1.0-hear2021-full" in result.output
    assert "22050,48000 Hz (on disk)" in result.output


def test_cli_tasks_lists_registered_and_on_disk_folders(esc10_task: Path, reference_task: Path,
                                                        tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    shutil.copytree(reference_task, tmp_path / "mridangam_tonic-v1.5-full")
    result = CliRunner().invoke(app, ["tasks", "--tasks-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ["esc50-v2.0.0-full", "speech_commands-v0.0.2-5h", "voxceleb1-v1.1-hear-atst-full",
                 "dcase2016_task2-hear2021-full", "spoken_digit-1.0.9-full", "mridangam_tonic-v1.5-full", "44100 Hz"]:
        assert text in result.output
    result = CliRunner().invoke(app, ["tasks", "--tasks-dir", str(esc10_task.parent)], env={"COLUMNS": "200"})
    assert "16000 Hz" in result.output
    # without --tasks-dir: $HEAR_ATST_TASKS, the folder `eval` and `embed` look in too
    result = CliRunner().invoke(app, ["tasks"], env={"COLUMNS": "200", "HEAR_ATST_TASKS": str(tmp_path)})
    assert result.exit_code == 0 and f"HEAR tasks ({tmp_path})" in result.output.replace("\n", "")
    assert "mridangam_tonic-v1.5-full" in result.output


def test_cli_prepare_reports_errors(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["prepare", "esc50", "--source", str(tmp_path), "--tasks-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "ESC-50-master/meta/esc50.csv" in result.output and "ESC-50-master.zip" in result.output
    result = CliRunner().invoke(app, ["prepare", "esc50", "--sample-rates", "8000", "--tasks-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--sample-rates" in result.output


@pytest.fixture()
def esc_copy(esc50_layout: Path, tmp_path: Path) -> Path:
    """A writable copy of the ESC-50 layout holding only fold 1 (80 clips), to damage."""
    root = tmp_path / "src" / "ESC-50-master"
    (root / "audio").mkdir(parents=True)
    lines = (esc50_layout / "ESC-50-master" / "meta" / "esc50.csv").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.startswith("1-")]
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(kept) + "\n")
    for line in kept[1:]:
        name = line.split(",")[0]
        shutil.copy(esc50_layout / "ESC-50-master" / "audio" / name, root / "audio" / name)
    return tmp_path / "src"


def _prepare_esc(source: Path, tasks_dir: Path, **kwargs) -> Path:
    spec = get_spec("esc50")
    one_fold = {**spec.config, "nfolds": 1}  # the copy holds fold 1 only
    return prepare_task(dataclasses.replace(spec, config=one_fold), tasks_dir, source=source, mode="small", **kwargs)


def test_corrupt_and_missing_source_files_are_named(esc_copy: Path, tmp_path: Path) -> None:
    audio = esc_copy / "ESC-50-master" / "audio"
    victim = sorted(audio.iterdir())[3]
    victim.write_bytes(b"RIFF....WAVEnot audio")
    with pytest.raises(RuntimeError, match=victim.name):
        _prepare_esc(esc_copy, tmp_path / "t1")
    victim.unlink()
    # small mode drops a listed clip whose audio is absent (hear-preprocess); full mode names it.
    folder = _prepare_esc(esc_copy, tmp_path / "t2")
    assert len(json.loads((folder / "fold00.json").read_text())) == 79
    spec = get_spec("esc50")
    with pytest.raises(FileNotFoundError, match=victim.name):
        prepare_task(dataclasses.replace(spec, config={**spec.config, "nfolds": 1}), tmp_path / "t3",
                     source=esc_copy, mode="full")


def test_archive_source_and_damaged_archive(esc_copy: Path, tmp_path: Path) -> None:
    archive = tmp_path / "ESC-50-master.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(esc_copy.rglob("*")):
            handle.write(path, path.relative_to(esc_copy))
    from_zip = _prepare_esc(archive, tmp_path / "zip")
    from_dir = _prepare_esc(esc_copy, tmp_path / "dir")
    assert (from_zip / "fold00.json").read_bytes() == (from_dir / "fold00.json").read_bytes()
    assert not (tmp_path / "zip" / "_workdir").exists()  # unpacked copy (and the emptied work folder) removed
    damaged = tmp_path / "damaged" / "ESC-50-master.zip"
    damaged.parent.mkdir()
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"ESC-50-master\.zip: damaged or unreadable archive"):
        _prepare_esc(damaged, tmp_path / "bad")
    # a well-formed archive without the marker leaves nothing behind: the right one then unpacks and prepares
    wrong = tmp_path / "wrong" / "ESC-50-master.zip"
    wrong.parent.mkdir()
    with zipfile.ZipFile(wrong, "w") as handle:
        handle.writestr("ESC-50-master/README.md", "not the data")
    with pytest.raises(SourceError, match=r"does not contain ESC-50-master/meta/esc50\.csv"):
        _prepare_esc(wrong, tmp_path / "retry")
    retried = _prepare_esc(archive, tmp_path / "retry")
    assert (retried / "fold00.json").read_bytes() == (from_dir / "fold00.json").read_bytes()


def test_an_unpacked_folder_belongs_to_its_archive(tmp_path: Path) -> None:
    """Another archive for the same source (e.g. the small ESC zip, then the full one) is unpacked afresh."""
    source = Source("all_folds", "ESC-50-master.zip", ("ESC-50-master",), "meta/esc50.csv")
    archives = []
    for name, content in (("first", "filename\n1.wav\n"), ("second", "filename\n2.wav\n")):
        archive = tmp_path / name / "ESC-50-master.zip"
        archive.parent.mkdir()
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("ESC-50-master/meta/esc50.csv", content)
        archives.append(archive)
    workdir = tmp_path / "work"
    workdir.mkdir()
    assert (unpack(archives[0], source, workdir) / "meta" / "esc50.csv").read_text() == "filename\n1.wav\n"
    assert (unpack(archives[0], source, workdir) / "meta" / "esc50.csv").read_text() == "filename\n1.wav\n"
    assert (unpack(archives[1], source, workdir) / "meta" / "esc50.csv").read_text() == "filename\n2.wav\n"


def test_idempotent_and_resumable(esc_copy: Path, tmp_path: Path) -> None:
    folder = _prepare_esc(esc_copy, tmp_path, sample_rates=(16000, 22050))
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    # Complete: nothing is rewritten, and the source is not needed any more.
    assert _prepare_esc(tmp_path / "gone", tmp_path, sample_rates=(16000, 22050)) == folder
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    # Interrupted: metadata not yet written, some clips missing, a stray clip present -> finished identically.
    (folder / "task_metadata.json").unlink()
    (folder / PREPARE_PENDING).write_bytes(b"{}")
    with pytest.raises(PrepareError, match="different configuration"):
        _prepare_esc(esc_copy, tmp_path, sample_rates=(16000, 22050))
    (folder / PREPARE_PENDING).unlink()
    removed = sorted((folder / "22050" / "fold00").iterdir())[:7]
    for path in removed:
        path.unlink()
    (folder / "16000" / "fold00" / "stray.wav").write_bytes(b"x")
    _prepare_esc(esc_copy, tmp_path, sample_rates=(16000, 22050))
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files
    # A folder prepared with another configuration is refused, not mixed.
    (folder / "task_metadata.json").write_text("{}")
    with pytest.raises(PrepareError, match="different configuration"):
        _prepare_esc(esc_copy, tmp_path, sample_rates=(16000,))


def test_download_errors_say_what_to_fetch(tmp_path: Path) -> None:
    offline = Source("x", "thing.zip", ("thing",), "m", url="http://127.0.0.1:9/thing.zip", md5="0" * 32)
    with pytest.raises(SourceError, match=r"cannot download http://127\.0\.0\.1:9/thing\.zip .* put it at"):
        fetch(offline, tmp_path, timeout=5)
    (tmp_path / "thing.zip").write_bytes(b"not the official file")
    with pytest.raises(SourceError, match=r"thing\.zip: md5 [0-9a-f]{32} does not match the official"):
        fetch(offline, tmp_path)
    with pytest.raises(SourceError, match="VoxCeleb1 requires registration"):
        prepare_task(get_spec("voxceleb1"), tmp_path / "tasks")


def test_a_download_cut_off_mid_stream_is_a_source_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class CutOff(io.BytesIO):  # a chunked response whose connection drops
        def read(self, size: int = -1) -> bytes:
            raise http.client.IncompleteRead(b"partial")

    monkeypatch.setattr("tasks.download.urllib.request.urlopen", lambda url, timeout: CutOff())
    source = Source("x", "thing.zip", ("thing",), "m", url="http://example.invalid/thing.zip", md5="0" * 32)
    with pytest.raises(SourceError, match=r"cannot download http://example\.invalid/thing\.zip \(IncompleteRead"):
        fetch(source, tmp_path)
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_tasks_dir_default_is_shared_by_every_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TASKS_DIR_ENV, raising=False)
    assert default_tasks_dir() == Path(DEFAULT_TASKS_DIR) == Path("tasks_data")
    monkeypatch.setenv(TASKS_DIR_ENV, str(tmp_path))
    assert default_tasks_dir() == tmp_path


def test_old_python_refuses_to_unpack_tar_archives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    archive = tmp_path / "thing.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(tmp_path, arcname="thing")
    monkeypatch.delattr(tarfile, "data_filter")  # Python < 3.10.12 / 3.11.4
    source = Source("x", archive.name, ("thing",), ".")
    with pytest.raises(SourceError, match=r"thing\.tar\.gz: this Python .* too old to unpack tar archives safely"):
        unpack(archive, source, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_first_failed_clip_cancels_the_rest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[str] = []

    def write_clip(relpath: str, sample_duration: float | None, outputs: list[tuple[Path, int]]) -> None:
        started.append(relpath)
        if relpath == "bad.wav":
            raise RuntimeError(f"{relpath}: not audio")
        time.sleep(0.05)

    monkeypatch.setattr(pipeline, "_write_clip", write_clip)
    jobs = [("bad.wav", [])] + [(f"ok{i}.wav", []) for i in range(200)]  # 10 s of work if nothing were cancelled
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"bad\.wav: not audio"):
        write_clips(jobs, None, workers=2)
    assert time.perf_counter() - start < 2 and len(started) < 20


def test_voxceleb1_wants_the_unpacked_folder(tmp_path: Path) -> None:
    spec = get_spec("voxceleb1")
    for source in (None, tmp_path / "vox1_dev_wav.zip", tmp_path):
        if source == tmp_path / "vox1_dev_wav.zip":
            source.write_bytes(b"PK")
        with pytest.raises(SourceError, match=r"a folder holding iden_split\.txt") as error:
            prepare_task(spec, tmp_path / "tasks", source=source)
        message = str(error.value)
        assert "vox1_dev_wav.zip" in message and "vox1_test_wav.zip" in message and "vox1.zip" not in message
    assert not (tmp_path / "tasks" / "_downloads").exists()
