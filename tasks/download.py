"""Find a task's official downloads: unpacked under ``--source``, as archives there, or fetched from the official URL.

Each :class:`Source` is one official download. Given ``--source PATH`` it is looked up as

1. an unpacked folder: ``PATH/<root>/<marker>`` for any of its ``roots`` (``"."`` = ``PATH`` itself), or ``PATH``
   itself when its name is one of the roots;
2. its archive: ``PATH/<archive>``, or ``PATH`` when ``PATH`` is that file (or any archive for a single-source task),
   unpacked into the work folder (``<workdir>/<name>.partial`` then renamed, so an interrupted unpacking restarts).

Without ``--source`` the archive is taken from ``<tasks_dir>/_downloads/`` or downloaded there from the official
URL (written as ``.part``, checksum-verified, then renamed). Offline, or for data behind a registration wall, the
error says which file to fetch, from where, and where to put it. A source with no single archive (VoxCeleb1) is
only taken as an unpacked folder. Archives given with ``--source`` are not checksum-checked (mirrors and re-zipped
copies differ); a damaged archive fails while unpacking, naming the file. Tar archives are unpacked with the
tarfile ``data`` filter only (Python >= 3.10.12 / 3.11.4); an older Python gets an error, not an unsafe unpacking.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hear_atst.atomic import write_bytes_atomic

DOWNLOADS_DIRNAME = "_downloads"


class SourceError(RuntimeError):
    """A required download is missing, damaged or cannot be fetched."""


@dataclass(frozen=True)
class Source:
    """One official download of a task."""

    name: str  # key the task's metadata builder uses, e.g. "all_folds", "train", "dev"
    archive: str | None  # file name of the official download, e.g. "ESC-50-master.zip"; None: no single archive
    # holds it (VoxCeleb1), so only an unpacked folder is accepted
    roots: tuple[str, ...]  # folder names it unpacks to (first = canonical; "." = the source folder itself)
    marker: str  # path inside the root that must exist, e.g. "meta/esc50.csv"
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    flat: bool = False  # the archive has no top folder: unpack it into <roots[0]>/
    registration: str | None = None  # set when the data cannot be fetched automatically: where to get it

    def describe(self) -> str:
        where = self.registration or self.url or "?"
        if self.archive is None:
            return f"a folder holding {self.marker} ({where})"
        return f"{self.archive} (or unpacked {self.roots[0]}/{self.marker}) from {where}"


def _unpacked(source: Source, folder: Path) -> Path | None:
    for root in source.roots:
        base = folder if root == "." else folder / root
        if (base / source.marker).exists():
            return base
    if folder.name in source.roots and (folder / source.marker).exists():
        return folder
    return None


def _is_archive(path: Path) -> bool:
    return path.is_file() and (path.suffix == ".zip" or path.name.endswith((".tar.gz", ".tgz", ".tar")))


def _require_safe_tar(archive: Path) -> None:
    """Refuse to unpack a tar archive without the tarfile ``data`` filter (it blocks links and absolute paths
    leading out of the target folder, and device files)."""
    if not hasattr(tarfile, "data_filter"):
        raise SourceError(
            f"{archive}: this Python ({sys.version.split()[0]}) is too old to unpack tar archives safely (the tarfile "
            "'data' filter needs Python >= 3.10.12 or >= 3.11.4); upgrade Python, or unpack the archive yourself "
            "and pass the folder with --source"
        )


def unpack(archive: Path, source: Source, workdir: Path) -> Path:
    """Unpack ``archive`` into ``workdir/<source.name>`` (once per archive) and return the root holding
    ``source.marker``. The folder records which archive (path and size) filled it: another archive replaces it, and
    an archive without the marker leaves nothing behind, so a wrong file never blocks a rerun with the right one."""
    target = workdir / source.name
    origin = workdir / f"{source.name}.from.json"
    identity = {"archive": str(archive.resolve()), "size": archive.stat().st_size}
    if target.exists() and (not origin.is_file() or json.loads(origin.read_text(encoding="utf-8")) != identity):
        shutil.rmtree(target)
    if not target.exists():
        if archive.suffix != ".zip":
            _require_safe_tar(archive)
        partial = workdir / f"{source.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        dest = partial / source.roots[0] if source.flat else partial
        dest.mkdir(parents=True)
        try:
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as handle:
                    handle.extractall(dest)
            else:
                with tarfile.open(archive) as handle:
                    handle.extractall(dest, filter="data")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise SourceError(f"{archive}: damaged or unreadable archive ({error}); fetch it again") from error
        partial.replace(target)
        write_bytes_atomic(origin, json.dumps(identity).encode())
    root = _unpacked(source, target)
    if root is None:
        shutil.rmtree(target)
        raise SourceError(f"{archive}: does not contain {source.roots[0]}/{source.marker}; is it the right file?")
    return root


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, source: Source) -> None:
    """Compare ``path`` with the official md5/sha256; raise naming the file on a mismatch."""
    for algorithm, expected in (("md5", source.md5), ("sha256", source.sha256)):
        if expected is not None:
            got = file_digest(path, algorithm)
            if got != expected:
                raise SourceError(
                    f"{path}: {algorithm} {got} does not match the official {expected}; delete it and fetch it again"
                )


def fetch(source: Source, downloads_dir: Path, timeout: float = 60.0) -> Path:
    """The verified official archive in ``downloads_dir``, downloading it when absent."""
    if source.archive is None:
        raise SourceError(f"{source.name}: no archive to download; pass --source with {source.describe()}")
    path = downloads_dir / source.archive
    if path.is_file():
        verify_checksum(path, source)
        return path
    if source.registration or source.url is None:
        raise SourceError(
            f"{source.archive} must be fetched by hand: {source.registration or 'no public URL'}. "
            f"Put it in {downloads_dir}/ or pass --source."
        )
    downloads_dir.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(source.url, timeout=timeout) as response, open(part, "wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 22)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:  # e.g. IncompleteRead: cut off
        part.unlink(missing_ok=True)
        raise SourceError(
            f"cannot download {source.url} ({error}). Fetch it yourself and put it at {path} "
            f"(md5 {source.md5 or '-'}, sha256 {source.sha256 or '-'}), or pass --source with the unpacked data."
        ) from error
    verify_checksum(part, source)
    part.replace(path)
    return path


def locate(sources: Sequence[Source], source_path: Path | None, workdir: Path, downloads_dir: Path) -> dict[str, Path]:
    """Root folder of every source, unpacking or downloading as needed (see the module docstring)."""
    roots: dict[str, Path] = {}
    for source in sources:
        if source_path is None:
            roots[source.name] = unpack(fetch(source, downloads_dir), source, workdir)
            continue
        if not source_path.exists():
            raise SourceError(f"{source_path}: --source does not exist")
        if source_path.is_dir():
            found = _unpacked(source, source_path)
            if found is not None:
                roots[source.name] = found
                continue
            if source.archive is None:
                raise SourceError(f"{source_path}: no {source.marker} in it; needs {source.describe()}")
            archive = source_path / source.archive
            if archive.is_file():
                roots[source.name] = unpack(archive, source, workdir)
                continue
            raise SourceError(
                f"{source_path}: neither {source.roots[0]}/{source.marker} nor {source.archive} found; "
                f"needs {source.describe()}"
            )
        if source.archive is None:
            raise SourceError(f"{source_path}: not a folder; needs {source.describe()}")
        if _is_archive(source_path) and (source_path.name == source.archive or len(sources) == 1):
            roots[source.name] = unpack(source_path, source, workdir)
            continue
        raise SourceError(f"{source_path}: not a folder or the archive {source.archive}; needs {source.describe()}")
    return roots
