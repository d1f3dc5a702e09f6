"""Atomic, durable file writes, the one implementation every writer in the project uses.

A reader (or a run resumed after ``kill -9`` or a power cut) sees either the previous file or the complete new one,
never a part: the data goes to a temporary file beside the target, is flushed to disk (``fsync``), replaces the
target, and the directory entry is flushed too, so a file that exists after a crash holds all its bytes.

Temporary files belong to their writer: ``.<name>.<pid>.<random>.tmp``. :func:`remove_stale_temp_files` removes
only those whose writing process is gone, never another live process's. An OS error (a full disk, a read-only
folder) is re-raised naming the file being written.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FILE_MODE = 0o644  # mkstemp creates 0600 files; results, embeddings and audio are meant to be read by others
TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # .<target name>.<pid>.<random>.tmp


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name when it names none (``No space left on device`` names nothing)."""
    if error.filename is not None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside ``path`` (parents created); when the block succeeds the file is
    fsynced and replaces ``path`` (the directory is fsynced too); when it raises the file is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(error, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> int:
    """Remove, under ``directory``, the temporary files of :func:`atomic_write` whose writing process has ended (a
    killed run's); a live writer's files are kept. Returns how many were removed."""
    removed = 0
    for candidate in Path(directory).rglob("*.tmp"):
        match = TEMP_PATTERN.match(candidate.name)
        if match and not _process_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)
            removed += 1
    return removed
