"""PNG grids a person can open (Pillow only).

Every writer shows pixel means (for a Bernoulli, the probability of a white pixel),
clamped to [0, 1]. Cells are separated by ``PAD`` pixels of mid gray, which stands out
on both dark and light images. A grid of R rows and C columns of S x S images is
``C * S + (C + 1) * PAD`` wide and ``R * S + (R + 1) * PAD`` high.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PAD = 2
PAD_VALUE = 128


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` floats in [0, 1] (C = 1 or 3) -> uint8 ``[N, H, W, C]``."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape [N, 1 or 3, H, W], got {tuple(images.shape)}")
    scaled = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def grid(rows: list[torch.Tensor], columns: int) -> Image.Image:
    """Lay out rows of images (each ``[n <= columns, C, H, W]``) into one picture."""
    channels, height, width = rows[0].shape[1:]
    canvas = np.full(
        (len(rows) * height + (len(rows) + 1) * PAD, columns * width + (columns + 1) * PAD, channels),
        PAD_VALUE, dtype=np.uint8,
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(to_uint8(row)):
            top, left = PAD + r * (height + PAD), PAD + c * (width + PAD)
            canvas[top : top + height, left : left + width] = image
    # Pillow picks the mode from the array: [H, W] uint8 -> "L", [H, W, 3] uint8 -> "RGB".
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas)


def save_png(image: Image.Image, stem: Path) -> list[Path]:
    path = Path(f"{stem}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return [path]


def write_samples(images: torch.Tensor, stem: Path) -> list[Path]:
    """A near-square grid of ``[N, C, H, W]`` images, row-major."""
    columns = math.ceil(math.sqrt(len(images)))
    return save_png(grid(list(images.split(columns)), columns), stem)


def write_reconstructions(inputs: torch.Tensor, reconstructions: torch.Tensor, stem: Path, columns: int = 16) -> list[Path]:
    """Inputs in one row, their reconstructions in the row below; wraps every ``columns`` images."""
    columns = min(columns, len(inputs))
    rows = []
    for inp, rec in zip(inputs.split(columns), reconstructions.split(columns)):
        rows += [inp, rec]
    return save_png(grid(rows, columns), stem)


def write_rows(images: torch.Tensor, steps: int, stem: Path) -> list[Path]:
    """One row per path of ``steps`` images (interpolations, latent traversals)."""
    if len(images) % steps:
        raise ValueError(f"{len(images)} images do not split into rows of {steps}")
    return save_png(grid(list(images.split(steps)), steps), stem)


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
