"""PNG grids a person can open, laid out by the core's ``vaezoo.save_png_grid``.

Every writer shows pixel means (for a Bernoulli, the probability of a white pixel),
clamped to [0, 1]. Cells are separated by ``PAD`` pixels of mid gray, which stands out
on both dark and light images. A grid of R rows and C columns of S x S images is
``C * S + (C + 1) * PAD`` wide and ``R * S + (R + 1) * PAD`` high.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

# The core's latent traversal (what `vaezoo traverse` runs for every modality), under the name
# this plugin has always exported: ``vaezoo_image.latent_traversal``.
from vaezoo import latent_traversal, save_png_grid

__all__ = ["PAD", "save_grid", "write_samples", "write_reconstructions", "write_rows", "latent_traversal"]

PAD = 2


def save_grid(rows: list[torch.Tensor], columns: int, stem: Path) -> list[Path]:
    """Rows of ``[n <= columns, C, H, W]`` images (C = 1 or 3) as ``STEM.png``."""
    return [save_png_grid(rows, Path(f"{stem}.png"), columns=columns, pad=PAD)]


def write_samples(images: torch.Tensor, stem: Path) -> list[Path]:
    """A near-square grid of ``[N, C, H, W]`` images, row-major."""
    columns = math.ceil(math.sqrt(len(images)))
    return save_grid(list(images.split(columns)), columns, stem)


def write_reconstructions(inputs: torch.Tensor, reconstructions: torch.Tensor, stem: Path, columns: int = 16) -> list[Path]:
    """Inputs in one row, their reconstructions in the row below; wraps every ``columns`` images."""
    columns = min(columns, len(inputs))
    rows = []
    for inp, rec in zip(inputs.split(columns), reconstructions.split(columns)):
        rows += [inp, rec]
    return save_grid(rows, columns, stem)


def write_rows(images: torch.Tensor, steps: int, stem: Path) -> list[Path]:
    """One row per path of ``steps`` images (interpolations, latent traversals)."""
    if len(images) % steps:
        raise ValueError(f"{len(images)} images do not split into rows of {steps}")
    return save_grid(list(images.split(steps)), steps, stem)
