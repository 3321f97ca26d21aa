"""Fixtures: tiny image data sets written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from image_helpers import random_images, write_idx, write_png


@pytest.fixture
def idx_folder(tmp_path) -> Path:
    """MNIST layout: 40 train and 10 test 8x8 images with labels 0..3, train gzipped, test plain."""
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", random_images(40, 8, seed=1), gz=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(40) % 4, gz=True)
    write_idx(folder / "t10k-images-idx3-ubyte", random_images(10, 8, seed=2))
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(10) % 4)
    return folder


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """A folder with class sub-folders 'bag' and 'shoe', 12 PNGs each, of varied sizes."""
    folder = tmp_path / "images"
    for c, name in enumerate(["bag", "shoe"]):
        for i, array in enumerate(random_images(12, 10 + c * 6, seed=c)):
            write_png(folder / name / f"{i:02d}.png", array)
    return folder
