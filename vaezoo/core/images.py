"""PNG grids of pictures: the one layout every writer that shows images uses (public plugin
API: ``vaezoo.save_png_grid``; the image and audio plugins write their grids with it).

A grid holds rows of cells, every cell a picture of the same height, width and channels.
Cells are separated, and the grid framed, by ``pad`` pixels of ``pad_value`` (mid gray by
default, which stands out on dark and on light pictures). A grid of R rows and C columns of
H x W cells is ``C * W + (C + 1) * pad`` pixels wide and ``R * H + (R + 1) * pad`` high; a
row with fewer than C cells leaves its end as padding.

A cell is a tensor or a numpy array of shape ``[1, H, W]`` (gray), ``[3, H, W]`` (RGB) or
``[H, W]`` (gray). Floating-point values are clamped to [0, 1] and scaled to 0..255, rounded
(NaN shows as 0); ``uint8`` values are used as they are (a picture coloured by the plugin).
The PNG is gray (mode ``"L"``) for one channel and RGB for three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from vaezoo.core.files import atomic_path

PAD = 2
PAD_VALUE = 128

__all__ = ["PAD", "PAD_VALUE", "png_grid", "save_png_grid"]


def _cell(cell: Any, where: str) -> np.ndarray:
    """One cell as uint8 ``[H, W, C]``."""
    if isinstance(cell, torch.Tensor):
        cell = cell.detach().cpu()
        cell = (cell.float() if cell.is_floating_point() else cell).numpy()
    a = np.asarray(cell)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"{where}: expected an image of shape [1 or 3, H, W] or [H, W], got {tuple(np.shape(cell))}")
    if a.dtype == np.uint8:
        pixels = a
    elif a.dtype.kind == "f" or a.dtype == np.bool_:
        values = np.nan_to_num(a.astype(np.float32), nan=0.0)
        pixels = np.round(np.clip(values, 0.0, 1.0) * np.float32(255)).astype(np.uint8)
    else:
        raise ValueError(f"{where}: expected floats in [0, 1] or uint8 values, got {a.dtype}")
    return pixels.transpose(1, 2, 0)


def png_grid(rows: Sequence[Iterable[Any]], columns: int | None = None, *, pad: int = PAD,
             pad_value: int = PAD_VALUE):
    """Lay out ``rows`` (each a sequence of cells, or a ``[n, C, H, W]`` tensor) as one
    ``PIL.Image``, ``columns`` wide (default: the longest row)."""
    from PIL import Image

    cells = [[_cell(c, f"row {r}, column {i}") for i, c in enumerate(row)] for r, row in enumerate(rows)]
    longest = max((len(row) for row in cells), default=0)
    if longest == 0:
        raise ValueError("a PNG grid needs at least one image")
    columns = longest if columns is None else int(columns)
    if longest > columns:
        raise ValueError(f"a row holds {longest} images but the grid has {columns} columns")
    if pad < 0 or not 0 <= pad_value <= 255:
        raise ValueError(f"pad must be >= 0 and pad_value in 0..255, got {pad} and {pad_value}")
    shape = next(c for row in cells for c in row).shape
    height, width, channels = shape
    canvas = np.full((len(cells) * height + (len(cells) + 1) * pad, columns * width + (columns + 1) * pad, channels),
                     pad_value, dtype=np.uint8)
    for r, row in enumerate(cells):
        for c, pixels in enumerate(row):
            if pixels.shape != shape:
                raise ValueError(f"row {r}, column {c}: every image of a grid needs the shape of the first "
                                 f"({channels}, {height}, {width}), got ({pixels.shape[2]}, {pixels.shape[0]}, {pixels.shape[1]})")
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            canvas[top : top + height, left : left + width] = pixels
    # Pillow picks the mode from the array: [H, W] uint8 -> "L", [H, W, 3] uint8 -> "RGB".
    return Image.fromarray(canvas[..., 0] if channels == 1 else canvas)


def save_png_grid(rows: Sequence[Iterable[Any]], path: Path | str, *, columns: int | None = None, pad: int = PAD,
                  pad_value: int = PAD_VALUE) -> Path:
    """Write ``rows`` of pictures as one PNG grid at ``path`` (atomically; missing folders are
    made) and return the path. ``rows`` is a sequence of rows, each a sequence of cells or a
    ``[n, C, H, W]`` tensor: ``list(images.split(columns))`` lays a batch out row-major.
    ``columns`` defaults to the longest row."""
    path = Path(path)
    image = png_grid(rows, columns, pad=pad, pad_value=pad_value)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
