"""Files written so that a crash or a power loss leaves the old version or the new one.

``atomic_path`` gives a temporary name beside the target; when the block succeeds the file is
flushed to disk (fsync) and renamed over the target, and the folder is flushed too. Plugins
use it (``vaezoo.atomic_path``) for every file they write into a run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TEMP_SUFFIX = ".tmp"

_UMASK = os.umask(0)
os.umask(_UMASK)


def file_mode() -> int:
    """The permissions a new file gets under this process's umask (mkstemp makes 0600)."""
    return 0o666 & ~_UMASK


def folder_mode() -> int:
    return 0o777 & ~_UMASK


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data to the disk (a folder: the names in it, after a rename)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # folders cannot be opened on some systems (Windows); nothing more can be done there
    try:
        os.fsync(fd)
    except OSError:
        pass    # some file systems refuse fsync on folders; the rename itself is still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, flush it to disk and
    rename it over ``path``. A crash at any moment leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; give the file the usual permissions
        fsync_path(Path(tmp))
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def is_temporary(path: Path) -> bool:
    """A temporary file or folder of atomic_path or write_checkpoint (``.NAME.*.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files and folders a killed process left behind."""
    found = [p for p in Path(run_dir).rglob(f".*{TEMP_SUFFIX}") if is_temporary(p)]
    for path in sorted(found, key=lambda p: len(p.parts)):   # a folder before what is inside it
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
