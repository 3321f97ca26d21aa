"""Helpers that write tiny image data for the tests (never the installed data sets)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from vaezoo.plugin.recipes import build_recipe


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """An IDX file of unsigned bytes: magic 00 00 08 ndim, big-endian sizes, data."""
    array = np.asarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def random_images(n: int, size: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_recipe(data: dict, model: dict | None = None, latent: int = 4, **sections):
    raw = {"modality": "image", "name": "t", "latent": {"dim": latent}, "data": data, "model": model or {}}
    raw.update(sections)
    return build_recipe(raw, source="test.toml", base_dir=Path("/"))
