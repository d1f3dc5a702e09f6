"""The one atomic writer: all or nothing, readable by others, no temporary file left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hear_atst.atomic import atomic_write, write_bytes_atomic, write_text_atomic


def test_writes_complete_files_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "folder" / "out.json"
    write_text_atomic(target, "{\"ok\": true}\n")
    assert target.read_text(encoding="utf-8") == "{\"ok\": true}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # mkstemp's 0600 would hide results from a lab's group
    write_bytes_atomic(target, b"replaced")
    assert target.read_bytes() == b"replaced"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "embeddings.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.npy"]


def test_a_staged_folder_replaces_the_old_one_as_a_whole(tmp_path: Path) -> None:
    from hear_atst.atomic import staged_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("old")
    (run / "test.events.json").write_text("old events")  # the new run has none: it must not survive beside it
    with staged_dir(run) as staged:
        write_text_atomic(staged / "results.json", "new")
        write_text_atomic(staged / "test.predicted-scores.json", "new scores")
        assert (run / "results.json").read_text() == "old"  # nothing visible before the block ends
    assert {p.name: p.read_text() for p in run.iterdir()} == {"results.json": "new",
                                                              "test.predicted-scores.json": "new scores"}
    with pytest.raises(RuntimeError, match="probe failed"), staged_dir(run) as staged:
        write_text_atomic(staged / "results.json", "half")
        raise RuntimeError("probe failed")
    assert {p.name: p.read_text() for p in run.iterdir()} == {"results.json": "new",
                                                              "test.predicted-scores.json": "new scores"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staged folder left


def test_os_errors_name_the_file_and_unwritable_folders_are_found_first(tmp_path: Path) -> None:
    from hear_atst.atomic import check_writable

    target = tmp_path / "scores.json"
    with pytest.raises(OSError) as caught, atomic_write(target):
        raise OSError(28, "No space left on device")  # as a full disk reports it: no file name
    assert str(caught.value) == f"[Errno 28] No space left on device: '{target}'"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as caught:
        check_writable(tmp_path / "file" / "results")
    assert str(caught.value) == f"{tmp_path / 'file' / 'results'}: cannot write there (Not a directory)"
    check_writable(tmp_path / "new" / "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created, nothing left behind


def test_a_scratch_folder_lies_on_the_targets_file_system_and_goes_when_done(tmp_path: Path) -> None:
    from hear_atst.atomic import TEMP_PATTERN, scratch_dir

    with scratch_dir(tmp_path / "embeddings" / "model" / "task") as scratch:  # not made yet: its nearest folder
        assert scratch.parent == tmp_path and TEMP_PATTERN.match(scratch.name)
        (scratch / "split").mkdir()
        (scratch / "split" / "clip.npy").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), scratch_dir(tmp_path) as scratch:
        raise RuntimeError("the timed work failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as caught, scratch_dir(tmp_path / "file" / "embeddings"):
        pass
    assert str(caught.value) == f"{tmp_path / 'file' / 'embeddings'}: cannot write there (Not a directory)"
