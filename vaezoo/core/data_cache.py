"""Folders of data derived once from a run's sources (a tokenized corpus, decoded images),
for plugins whose data should be read by memory map rather than held.

``cached_folder(folder, fingerprint, build)`` returns the folder's manifest when it was made
from what ``fingerprint`` describes, and otherwise builds it: ``build(staging)`` writes the
files into a staging folder and returns what the manifest should say, the manifest
(``manifest.json``, with the fingerprint) is written last, and the staging folder is renamed
into place. All of it happens under a lock file, so concurrent processes (DDP ranks) build
once, and a crash at any point leaves either the old folder or none, never half of one.
A run folder that cannot be written (a shared model folder) gets the data in a temporary
folder, removed when the process ends.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from vaezoo.core.files import write_json

MANIFEST = "manifest.json"


def file_fingerprint(paths: Iterable[Path | str | None]) -> list[list]:
    """``[path, size, mtime_ns]`` of each file (a folder: each file under it, sorted); ``[path,
    None, None]`` for one that is gone. None entries are skipped."""
    out: list[list] = []
    for source in (Path(p) for p in paths if p is not None):
        for path in sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]:
            try:
                stat = path.stat()
                out.append([str(path), stat.st_size, stat.st_mtime_ns])
            except FileNotFoundError:
                out.append([str(path), None, None])
    return out


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None when there is no complete folder."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("fingerprint"), dict) else None


def _sources_gone_only(stored: dict, current: dict) -> bool:
    """The fingerprints differ only in files that are gone now (``file_fingerprint`` entries
    under the key "files"): a run moved without its data still reads what it derived."""
    files = current.get("files")
    if not isinstance(files, list) or not any(size is None for _, size, _ in files):
        return False
    return {k: v for k, v in stored.items() if k != "files"} == {k: v for k, v in current.items() if k != "files"}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing); the kernel drops it if the process dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fits(manifest: dict | None, fingerprint: dict) -> bool:
    return manifest is not None and (manifest["fingerprint"] == fingerprint
                                     or _sources_gone_only(manifest["fingerprint"], fingerprint))


def _build(folder: Path, fingerprint: dict, build: Callable[[Path], dict]) -> dict:
    lock = folder.with_name(f".{folder.name}.lock")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lock):
        manifest = read_manifest(folder)   # another process may have built it while this one waited
        if manifest is not None and _fits(manifest, fingerprint):
            return manifest
        staging = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)   # left by a crash; the lock says nobody writes it now
        staging.mkdir()
        manifest = {**build(staging), "fingerprint": fingerprint}
        write_json(staging / MANIFEST, manifest)
        shutil.rmtree(folder, ignore_errors=True)    # a stale folder
        os.replace(staging, folder)
    return manifest


def cached_folder(folder: Path, fingerprint: dict, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """``(folder, manifest)`` of derived data made from what ``fingerprint`` describes (see the
    module docstring); ``folder`` may be a temporary one when the run folder is read-only.
    ``fingerprint`` is JSON data; put ``file_fingerprint(...)`` of the sources under "files"."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is not None and _fits(manifest, fingerprint):
        return folder, manifest
    try:
        return folder, _build(folder, fingerprint, build)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    temporary = Path(tempfile.mkdtemp(prefix="vaezoo-data-")) / folder.name
    atexit.register(shutil.rmtree, temporary.parent, True)
    return temporary, _build(temporary, fingerprint, build)
