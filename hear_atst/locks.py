"""One writer per output folder: an exclusive ``flock`` on a lock file beside the folder.

The lock file ``.<folder name>.lock`` lives in the folder's parent, so the folder itself holds only its own files.
The kernel releases the lock when its process ends, however it ends (``kill -9`` included): a lock is never stale.
A second process waits for the first (saying so once) and then sees what the first left: finished or resumable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], note: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (its parent is created) for the block; ``note`` hears once when another
    process holds it and this one waits."""
    folder = Path(folder)
    path = lock_path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise OSError(f"{path}: cannot create this lock file ({error.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if note:
                note(f"waiting for another hear-atst process that is writing {folder}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
