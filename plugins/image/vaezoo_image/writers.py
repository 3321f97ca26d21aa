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

from vaezoo import save_png_grid

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


@torch.no_grad()
def latent_traversal(vae, z: torch.Tensor | None = None, *, steps: int = 9, span: float = 3.0,
                     dims: list[int] | None = None):
    """Decode ``z`` with one latent dimension at a time swept over [-span, span].

    ``z`` is the ``[D]`` starting point (default: the prior mean, zeros); ``dims`` the
    dimensions to sweep (default: all). Returns ``(z, p(x|z))`` with ``len(dims) * steps``
    latents, row-major: the ``steps`` values of the first dimension first.
    """
    param = next(vae.parameters())
    base = torch.zeros(vae.latent_dim, device=param.device, dtype=param.dtype) if z is None else z.to(param)
    dims = list(range(vae.latent_dim)) if dims is None else list(dims)
    bad = [d for d in dims if not 0 <= d < vae.latent_dim]
    if bad:
        raise ValueError(f"latent dimensions {bad} are out of range; the latent has {vae.latent_dim}")
    values = torch.linspace(-span, span, steps, device=base.device, dtype=base.dtype)
    latents = base.repeat(len(dims) * steps, 1)
    for row, d in enumerate(dims):
        latents[row * steps : (row + 1) * steps, d] = values
    return latents, vae.decode(latents)
