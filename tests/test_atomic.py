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
