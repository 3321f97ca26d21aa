"""The run format: the layout of a run directory's files, versioned so that old runs keep loading.

``RUN_FORMAT`` is written into the metadata of every weights file (``"run_format"``, beside
``"vaezoo_version"``). A file without it was written before the format had a number; its
layout is format 1. Loading checks the number first:

- a newer format than this vaezoo knows is refused with one line naming both versions;
- an older one goes through ``MIGRATIONS``, one step per format (format n -> n + 1, on the
  weights' state dict), before the weights are loaded, so a change of layout comes with the
  step that reads the old one. tests/fixtures/run-format-1/ is a run written in format 1;
  tests/test_run_format.py keeps loading, sampling and evaluating it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch

from vaezoo.core.errors import RunDirError

#: the run format this vaezoo writes (and the newest it reads)
RUN_FORMAT = 1
#: the format of weights files that carry no number (written before formats were numbered)
UNNUMBERED = 1
StateDict = dict[str, torch.Tensor]
#: format n -> the step that turns an n state dict into an n + 1 one (none yet: format 1 is the first)
MIGRATIONS: dict[int, Callable[[StateDict], StateDict]] = {}


def format_metadata() -> dict[str, str]:
    """What a weights file records about its format."""
    return {"run_format": str(RUN_FORMAT)}


def run_format(path: Path, metadata: Mapping[str, str]) -> int:
    """The format of the weights file ``path`` (its metadata given), checked to be readable here."""
    text = metadata.get("run_format")
    if text is None:
        return UNNUMBERED
    if not text.isdigit() or int(text) < 1:
        raise RunDirError(f"{path}: run_format {text!r} in its metadata is not a format number (1, 2, ...)")
    found = int(text)
    if found > RUN_FORMAT:
        from vaezoo.core.version import __version__

        writer = metadata.get("vaezoo_version", "a newer vaezoo")
        raise RunDirError(f"{path}: written in run format {found} by vaezoo {writer}; this vaezoo ({__version__}) "
                          f"reads run formats up to {RUN_FORMAT}: upgrade vaezoo to open it")
    return found


def migrate(state: StateDict, found: int) -> StateDict:
    """``state`` of format ``found`` brought to ``RUN_FORMAT``, one migration step at a time."""
    for step in range(found, RUN_FORMAT):
        if step not in MIGRATIONS:
            raise RunDirError(f"no migration from run format {step} to {step + 1}: this vaezoo cannot read it")
        state = MIGRATIONS[step](state)
    return state
