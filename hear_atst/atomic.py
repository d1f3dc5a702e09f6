"""Atomic, durable file writes, the one implementation every writer in the project uses.

A reader (or a run resumed after ``kill -9`` or a power cut) sees either the previous file or the complete new one,
never a part: the data goes to a temporary file beside the target, is flushed to disk (``fsync``), replaces the
target, and the directory entry is flushed too, so a file that exists after a crash holds all its bytes.

Files written as one unit (a run's results) go to a staged folder that replaces the target folder in one
``renameat2(RENAME_EXCHANGE)`` (:func:`staged_dir`): a reader sees all old or all new files, never a mix.

Temporary files and folders belong to their writer: ``.<name>.<pid>.<random>.tmp``. :func:`remove_stale_temp_files`
removes only those whose writing process is gone, never another live process's. An OS error (a full disk, a
read-only folder) is re-raised naming the file being written; :func:`check_writable` finds an unwritable output
folder before any work; :func:`scratch_dir` lends a throwaway folder on an output folder's file system (to time
writes there).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FILE_MODE = 0o644  # mkstemp creates 0600 files; results, embeddings and audio are meant to be read by others
TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # .<target name>.<pid>.<random>.tmp
AT_FDCWD, RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


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


def remove_stale_temp_files(directory: str | os.PathLike[str], recursive: bool = True) -> int:
    """Remove, in ``directory`` (and below unless ``recursive=False``), the temporary files and staged folders of
    this module whose writing process has ended (a killed run's); a live writer's are kept. Returns how many."""
    removed = 0
    directory = Path(directory)
    for candidate in list(directory.rglob("*.tmp") if recursive else directory.glob(".*.tmp")):
        match = TEMP_PATTERN.match(candidate.name)
        if match and not _process_alive(int(match.group(1))):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed += 1
    return removed


def _nearest_existing(directory: Path) -> Path:
    return next(path for path in (directory, *directory.parents) if path.exists())


@contextlib.contextmanager
def scratch_dir(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary folder on the file system of ``directory``: in it, or in its nearest existing ancestor
    when it does not exist yet (nothing else is created); removed with its contents when the block ends. Named as
    this module's temporary files are, so :func:`remove_stale_temp_files` removes one left by a killed process.
    OSError naming ``directory`` when it cannot be made there."""
    directory = Path(directory)
    try:
        scratch = Path(tempfile.mkdtemp(dir=_nearest_existing(directory), prefix=f".scratch.{os.getpid()}.",
                                        suffix=".tmp"))
    except OSError as error:
        raise OSError(f"{directory}: cannot write there ({error.strerror})") from None
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch)


def check_writable(directory: str | os.PathLike[str]) -> None:
    """Check that ``directory`` can be created and written, leaving nothing behind: a file is created and removed
    in it or, when it does not exist yet, in its nearest existing ancestor (which must be a folder). OSError naming
    ``directory`` when that fails (read-only, no permission, a file in the way)."""
    directory = Path(directory)
    existing = _nearest_existing(directory)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        fd, probe = tempfile.mkstemp(dir=existing, prefix=f".write-check.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OSError(f"{directory}: cannot write there ({error.strerror})") from None


def _exchange(first: Path, second: Path) -> None:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(second))


def replace_dir(staged: Path, target: Path) -> None:
    """Make the complete folder ``staged`` the folder ``target`` in one step, removing the old ``target``."""
    if not target.exists():
        os.rename(staged, target)
    else:
        try:
            _exchange(staged, target)
        except (AttributeError, OSError) as error:  # no renameat2 (non-Linux, old glibc) or unsupported file system
            if isinstance(error, OSError) and error.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                raise
            aside = target.with_name(f".{target.name}.{os.getpid()}.old.tmp")  # a reader may see no folder, never
            os.rename(target, aside)                                           # a mix of two runs' files
            os.rename(staged, target)
            staged = aside
        shutil.rmtree(staged)
    fsync_dir(target.parent)


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write a unit of files into (with :func:`atomic_write`, so each is
    fsynced); it replaces ``target`` as a whole when the block succeeds (:func:`replace_dir`) and is removed when it
    raises."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"))
        os.chmod(staged, 0o755)
    except OSError as error:
        raise _naming(error, target) from None
    try:
        yield staged
        replace_dir(staged, target)
    except OSError as error:
        shutil.rmtree(staged, ignore_errors=True)
        name = str(error.filename or "")
        if name.startswith(f"{staged}{os.sep}"):  # name the file as the user knows it
            raise type(error)(error.errno, error.strerror, str(target / Path(name).relative_to(staged))) from None
        raise
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
