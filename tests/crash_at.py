"""The `vaezoo` command line, killed with SIGKILL just before its N-th file-system operation.

    VAEZOO_TEST_KILL_AT=N python tests/crash_at.py train RECIPE --run-dir RUN

Counted operations: os.fsync, os.replace, os.rename, os.unlink, os.rmdir, os.mkdir and
os.truncate, which are the points where what is on disk changes shape (a file's bytes
are written between them). N = 0 kills nothing. When VAEZOO_TEST_OPS_LOG names a file, each
operation appends "INDEX NAME PATH" to it, so a test can pick its kill points from a clean
run. VAEZOO_TEST_READY, when set, names a file created once the imports are done (so a
test can time a kill into the command's work). Before a kill at the fsync of a temporary file (a name ending in .tmp, or inside a
.tmp folder), the file is cut to half its length, as a power loss before that flush could.
"""

from __future__ import annotations

import os
import signal
import sys

KILL_AT = int(os.environ.get("VAEZOO_TEST_KILL_AT", "0"))
LOG = os.environ.get("VAEZOO_TEST_OPS_LOG")
_count = 0
_truncate = os.truncate   # the real one: the counted one would count this too


def _path_of(name: str, args: tuple, kwargs: dict) -> str:
    if name == "fsync":
        try:
            return os.readlink(f"/proc/self/fd/{args[0]}")
        except OSError:
            return "?"
    path = os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes, os.PathLike)) else "?"
    if kwargs.get("dir_fd") is not None:   # shutil.rmtree names entries relative to their folder
        path = os.path.join(os.readlink(f"/proc/self/fd/{kwargs['dir_fd']}"), path)
    return path


def _counted(name: str, real):
    def operation(*args, **kwargs):
        global _count
        _count += 1
        path = _path_of(name, args, kwargs)
        if LOG:
            fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f"{_count} {name} {path}\n".encode())
            os.close(fd)
        if _count == KILL_AT:
            if name == "fsync" and ".tmp" in path and os.path.isfile(path):
                _truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    return operation


if __name__ == "__main__":
    from vaezoo.cli import main  # imported first: only the command's own operations are counted

    for name in ("fsync", "replace", "rename", "unlink", "rmdir", "mkdir", "truncate"):
        setattr(os, name, _counted(name, getattr(os, name)))
    if os.environ.get("VAEZOO_TEST_READY"):
        open(os.environ["VAEZOO_TEST_READY"], "w").close()
    sys.argv[0] = "vaezoo"
    main()
