"""One progress-bar style for the commands that walk a whole split (encoding, scoring)."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "batch") -> Iterable[T]:
    """A tqdm bar on stderr that leaves no line behind; redrawn rarely when stderr is a log file."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 10)
