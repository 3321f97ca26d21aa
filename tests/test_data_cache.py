"""Derived-data folders (vaezoo.cached_folder): built once, rebuilt when their sources change,
never left half-built, built once by concurrent processes."""

from __future__ import annotations

import errno
import json
import multiprocessing
import time

import pytest

import vaezoo
from vaezoo.core import data_cache


def writer(calls: list, text: str = "data"):
    def build(staging):
        calls.append(staging)
        (staging / "values.txt").write_text(text)
        return {"rows": 1}
    return build


def test_built_once_then_reused_and_rebuilt_when_the_fingerprint_changes(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("a")
    calls: list = []
    fingerprint = {"files": vaezoo.file_fingerprint([source]), "option": 1}
    folder, manifest = vaezoo.cached_folder(tmp_path / "derived", fingerprint, writer(calls))
    assert folder == tmp_path / "derived" and manifest == {"rows": 1, "fingerprint": fingerprint}
    assert json.loads((folder / "manifest.json").read_text()) == manifest and (folder / "values.txt").is_file()
    again = vaezoo.cached_folder(tmp_path / "derived", {"files": vaezoo.file_fingerprint([source]), "option": 1},
                                 writer(calls))
    assert again == (folder, manifest) and len(calls) == 1
    source.write_text("ab")                                   # the source changed: rebuilt
    vaezoo.cached_folder(folder, {"files": vaezoo.file_fingerprint([source]), "option": 1}, writer(calls, "new"))
    assert len(calls) == 2 and (folder / "values.txt").read_text() == "new"
    vaezoo.cached_folder(folder, {"files": vaezoo.file_fingerprint([source]), "option": 2}, writer(calls))
    assert len(calls) == 3                                    # an option changed: rebuilt


def test_sources_that_are_gone_leave_the_folder_usable(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("a")
    calls: list = []
    vaezoo.cached_folder(tmp_path / "derived", {"files": vaezoo.file_fingerprint([source])}, writer(calls))
    source.unlink()
    gone = vaezoo.file_fingerprint([source])
    assert gone == [[str(source), None, None]]
    vaezoo.cached_folder(tmp_path / "derived", {"files": gone}, writer(calls))
    assert len(calls) == 1


def test_a_failed_build_leaves_the_old_folder_and_no_staging(tmp_path):
    calls: list = []
    folder, _ = vaezoo.cached_folder(tmp_path / "derived", {"v": 1}, writer(calls, "old"))

    def dies(staging):
        (staging / "values.txt").write_text("half")
        raise KeyboardInterrupt   # as a kill would stop it: nothing after this line runs

    with pytest.raises(KeyboardInterrupt):
        vaezoo.cached_folder(folder, {"v": 2}, dies)
    assert (folder / "values.txt").read_text() == "old" and data_cache.read_manifest(folder)["fingerprint"] == {"v": 1}
    # The next build clears the staging folder the dead one left and replaces the old folder.
    vaezoo.cached_folder(folder, {"v": 2}, writer(calls, "new"))
    assert (folder / "values.txt").read_text() == "new" and not (tmp_path / ".derived.partial").exists()


def test_a_read_only_run_folder_gets_a_temporary_one(tmp_path, monkeypatch):
    real = data_cache._build

    def refuse(folder, *args):
        if folder.parent == tmp_path:
            raise PermissionError(errno.EROFS, "Read-only file system", str(folder))
        return real(folder, *args)

    monkeypatch.setattr(data_cache, "_build", refuse)
    folder, manifest = vaezoo.cached_folder(tmp_path / "derived", {"v": 1}, writer([]))
    assert folder.parent != tmp_path and folder.name == "derived" and (folder / "values.txt").is_file()
    assert not (tmp_path / "derived").exists()


def slow_build(folder, log):
    def build(staging):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        (staging / "values.txt").write_text("x")
        return {}
    vaezoo.cached_folder(folder, {"v": 1}, build)


def test_concurrent_processes_build_it_once(tmp_path):
    log = tmp_path / "log.txt"
    processes = [multiprocessing.get_context("spawn").Process(target=slow_build, args=(tmp_path / "derived", log))
                 for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0, 0]
    assert log.read_text() == "built\n" and (tmp_path / "derived" / "values.txt").read_text() == "x"
