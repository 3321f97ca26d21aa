"""A dSprites-like image set with known factors, drawn with Pillow, for measuring disentanglement.

Every image is one white shape on black, fixed by five factors (as in dSprites, Matthey et al.
2017), each an index into a grid of values:

    shape     square, ellipse, heart                 (3)
    scale     0.5 ... 1.0, evenly spaced             (--scales, 6)
    rotation  0 ... 2 pi (excluded), evenly spaced   (--rotations, 40)
    x, y      the centre, evenly spaced across the   (--positions each, default size / 2: 32 at 64 x 64)
              frame so every shape stays inside it
              (a pixel clear of the edges)

The full grid (737,280 images at the defaults) is more than a quick run needs, so ``--count``
training and ``--test-count`` test images are drawn from it without replacement (disjoint,
seeded: the same arguments write the same bytes). Shapes are drawn at four times the size and
averaged down, so edges are grey and small rotations still show.

Written as MNIST-format IDX files the image plugin reads (``data.path`` = the folder):

    train-images-idx3-ubyte.gz   uint8 [N, size, size]
    train-labels-idx1-ubyte.gz   uint8 [N]     the shape (so latent-map colours by shape)
    train-factors-idx2-ubyte.gz  uint8 [N, 5]  the factor indices, in the order above
    t10k-*                       the same for the test split
    factors.json                 factor names, sizes and values, and the arguments used

``data.factors = true`` makes the plugin's batches carry the indices as ``"factors"``, which
``vaezoo disentanglement`` reads. From the command line::

    python -m vaezoo_image.shapes data/shapes --size 32 --count 20000
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import struct
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
SUPERSAMPLE = 4          # shapes are drawn this many times larger, then averaged down
RADIUS = 0.2             # a scale-1 shape's circumradius, as a share of the image side
FACTORS_JSON = "factors.json"


def _outline(shape: str) -> np.ndarray:
    """The outline of ``shape`` as ``[K, 2]`` points (x right, y up), centred, circumradius 1."""
    if shape == "square":
        points = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    elif shape == "ellipse":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        points = np.stack([np.cos(t), 0.5 * np.sin(t)], 1)
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        points = np.stack([16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)], 1)
        points -= (points.max(0) + points.min(0)) / 2     # centre of the bounding box
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    return points / np.linalg.norm(points, axis=1).max()


_OUTLINES = {name: _outline(name) for name in SHAPES}


@dataclass
class ShapeGrid:
    """The factor grid: how many values each factor takes, and what they are."""

    size: int = 64
    scales: int = 6
    rotations: int = 40
    positions: int = 0           # 0: size // 2

    def __post_init__(self) -> None:
        if self.positions == 0:
            self.positions = max(2, self.size // 2)
        problems = []
        if self.size < 8:
            problems.append(f"size must be at least 8 pixels, got {self.size}")
        if not 1 <= self.scales <= 255:
            problems.append(f"scales must be 1 ... 255, got {self.scales}")
        if not 1 <= self.rotations <= 255:
            problems.append(f"rotations must be 1 ... 255, got {self.rotations}")
        if not 1 <= self.positions <= min(255, self.size):
            problems.append(f"positions must be 1 ... {min(255, self.size)} (at most one per pixel), got {self.positions}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def sizes(self) -> tuple[int, ...]:
        return (len(SHAPES), self.scales, self.rotations, self.positions, self.positions)

    def __len__(self) -> int:
        return math.prod(self.sizes)

    @cached_property
    def values(self) -> dict[str, list]:
        """Each factor's values: shape names, scales, rotations in radians, x and y as the
        centre's share of the image side (0 = left/top edge)."""
        radius = RADIUS * self.size + 1.5    # pixels to spare: every shape keeps clear of the edges
        centres = np.linspace(radius, self.size - radius, self.positions) if self.positions > 1 else np.array([self.size / 2])
        scales = np.linspace(0.5, 1.0, self.scales) if self.scales > 1 else np.array([1.0])
        return {
            "shape": list(SHAPES),
            "scale": [round(float(s), 6) for s in scales],
            "rotation": [round(2 * math.pi * r / self.rotations, 6) for r in range(self.rotations)],
            "x": [round(float(c) / self.size, 6) for c in centres],
            "y": [round(float(c) / self.size, 6) for c in centres],
        }

    def draw(self, factors: Sequence[int]) -> np.ndarray:
        """The uint8 ``[size, size]`` image of one row of factor indices."""
        shape, scale, rotation, x, y = (int(f) for f in factors)
        values = self.values
        k = SUPERSAMPLE
        side = self.size * k
        angle = values["rotation"][rotation]
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = _OUTLINES[SHAPES[shape]] @ turn.T * (values["scale"][scale] * RADIUS * side)
        centre = np.array([values["x"][x], values["y"][y]]) * side
        # y points up in the outline, down in the image
        xy = np.stack([centre[0] + points[:, 0], centre[1] - points[:, 1]], 1)
        canvas = Image.new("L", (side, side), 0)
        ImageDraw.Draw(canvas).polygon([(float(px), float(py)) for px, py in xy], fill=255)
        return np.asarray(canvas.resize((self.size, self.size), Image.Resampling.BOX), dtype=np.uint8)

    def unravel(self, flat: np.ndarray) -> np.ndarray:
        """Grid positions (0 ... len - 1) to factor indices ``[N, 5]``."""
        return np.stack(np.unravel_index(flat, self.sizes), 1).astype(np.uint8)


@dataclass
class ShapesInfo:
    """What factors.json holds."""

    names: list[str]
    sizes: list[int]
    values: dict[str, list]
    image_size: int
    train: int
    test: int
    seed: int
    generator: str = "vaezoo_image.shapes"
    files: list[str] = field(default_factory=list)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An unsigned-byte IDX file, gzipped (magic 00 00 08 ndim, big-endian sizes, data), atomically."""
    import vaezoo

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with vaezoo.atomic_path(path) as tmp, tmp.open("wb") as raw:
        # no name and no time in the gzip header, so the same arguments write the same bytes
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as f:
            f.write(header)
            f.write(array.tobytes())
    return path


def generate_shapes(out: Path, *, size: int = 64, count: int = 20000, test_count: int = 5000, scales: int = 6,
                    rotations: int = 40, positions: int = 0, seed: int = 0) -> ShapesInfo:
    """Draw ``count`` training and ``test_count`` test images (disjoint, seeded) into ``out``."""
    grid = ShapeGrid(size, scales, rotations, positions)
    total = count + test_count
    if count < 1 or test_count < 1:
        raise ValueError(f"count and test_count must be at least 1, got {count} and {test_count}")
    if total > len(grid):
        raise ValueError(f"count + test_count = {total} is more than the {len(grid)} images of the factor grid "
                         f"{' x '.join(map(str, grid.sizes))}; ask for fewer, or more positions/rotations/scales")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(grid), size=total, replace=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for prefix, flat in (("train", chosen[:count]), ("t10k", chosen[count:])):
        factors = grid.unravel(flat)
        images = np.stack([grid.draw(row) for row in factors])
        files += [write_idx(out / f"{prefix}-images-idx3-ubyte.gz", images),
                  write_idx(out / f"{prefix}-labels-idx1-ubyte.gz", factors[:, 0]),
                  write_idx(out / f"{prefix}-factors-idx2-ubyte.gz", factors)]
    info = ShapesInfo(list(FACTOR_NAMES), list(grid.sizes), grid.values, size, count, test_count, seed,
                      files=[f.name for f in files])
    import vaezoo

    vaezoo.write_json(out / FACTORS_JSON, asdict(info))
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaezoo_image.shapes",
        description="Write a dSprites-like set of shapes with known factors (shape, scale, rotation, x, y) as "
                    "IDX files for the image plugin (data.path = OUT, data.factors = true).")
    parser.add_argument("out", type=Path, help="output folder (created; files in it are replaced)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    parser.add_argument("--count", type=int, default=20000, help="training images (default: 20000)")
    parser.add_argument("--test-count", type=int, default=5000, help="test images (default: 5000)")
    parser.add_argument("--scales", type=int, default=6, help="scale values, 0.5 ... 1 (default: 6)")
    parser.add_argument("--rotations", type=int, default=40, help="rotation values over a full turn (default: 40)")
    parser.add_argument("--positions", type=int, default=0, help="x and y values each (default: size / 2)")
    parser.add_argument("--seed", type=int, default=0, help="which images are drawn from the grid (default: 0)")
    args = parser.parse_args(argv)
    try:
        info = generate_shapes(args.out, size=args.size, count=args.count, test_count=args.test_count,
                               scales=args.scales, rotations=args.rotations, positions=args.positions, seed=args.seed)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    grid = " x ".join(f"{n} {s}" for n, s in zip(info.names, info.sizes))
    print(f"wrote {info.train} training and {info.test} test images of {info.image_size} x {info.image_size} "
          f"to {args.out} (factors: {grid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
