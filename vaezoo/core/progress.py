"""One progress-bar style for the commands that walk a whole split (encoding, scoring), and
one switch to silence them (the commands' --no-progress)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# Module state rather than a flag threaded through every helper: the bars are drawn deep
# inside encode/score/evaluate code that a command reaches through several calls.
_show = True


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Within the block, ``progress`` draws bars only if ``show``; the previous setting returns after."""
    global _show
    before, _show = _show, show
    try:
        yield
    finally:
        _show = before


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "batch") -> Iterable[T]:
    """A tqdm bar on stderr that leaves no line behind; redrawn rarely when stderr is a log file."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr, disable=not _show,
                mininterval=0.5 if sys.stderr.isatty() else 10)
