"""Text files a person reads: one sentence per line.

- samples: one decoded sentence per line.
- reconstructions: blocks of two lines (the input, then its reconstruction), a blank line
  between blocks.
- interpolations: one block of ``steps`` lines per pair (Bowman et al.'s homotopies: the
  first and last lines decode the two end points), a blank line between blocks.

A decoding that is empty (EOS first) is written as ``<empty>`` so blank lines only ever
separate blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vaezoo import write_text

EMPTY = "<empty>"


def _line(sentence: str) -> str:
    # A sentence never spans lines: the file format is one sentence per line.
    return " ".join(sentence.split()) or EMPTY


def write_lines(blocks: Sequence[Sequence[str]], stem: Path) -> list[Path]:
    """Write ``{stem}.txt``: the lines of each block, blocks separated by a blank line."""
    path = Path(f"{stem}.txt")
    text = "\n\n".join("\n".join(_line(s) for s in block) for block in blocks)
    write_text(path, text + "\n")   # atomic; makes the folder
    return [path]


def write_samples(sentences: Sequence[str], stem: Path) -> list[Path]:
    return write_lines([sentences], stem)


def write_reconstructions(inputs: Sequence[str], outputs: Sequence[str], stem: Path) -> list[Path]:
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} reconstructions")
    return write_lines([[a, b] for a, b in zip(inputs, outputs)], stem)


def write_interpolations(sentences: Sequence[str], steps: int, stem: Path) -> list[Path]:
    if len(sentences) % steps:
        raise ValueError(f"{len(sentences)} decodings do not split into paths of {steps} steps")
    return write_lines([sentences[i : i + steps] for i in range(0, len(sentences), steps)], stem)
