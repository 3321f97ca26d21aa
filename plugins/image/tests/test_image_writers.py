"""PNG grids: sizes, layouts and pixel values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaezoo import VAE, Bernoulli
from vaezoo_image import ImageModality, latent_traversal
from vaezoo_image.writers import PAD, write_reconstructions, write_rows, write_samples

from image_helpers import make_recipe


def side(count: int, pixels: int) -> int:
    return count * pixels + (count + 1) * PAD


def test_samples_grid(tmp_path):
    images = torch.rand(10, 1, 6, 6)
    (path,) = write_samples(images, tmp_path / "out" / "samples")
    assert path == tmp_path / "out" / "samples.png"
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (side(4, 6), side(3, 6))   # 10 images: 4 columns, 3 rows
        first = np.asarray(im)[PAD : PAD + 6, PAD : PAD + 6]
    np.testing.assert_array_equal(first, (images[0, 0] * 255).round().numpy().astype(np.uint8))


def test_reconstructions_rgb_and_wrapping(tmp_path):
    inputs, recs = torch.rand(20, 3, 5, 5), torch.rand(20, 3, 5, 5)
    (path,) = write_reconstructions(inputs, recs, tmp_path / "rec")
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (side(16, 5), side(4, 5))   # 16 + 4: two input/output row pairs
        row2 = np.asarray(im)[2 * PAD + 5 : 2 * PAD + 10, PAD : PAD + 5]
    np.testing.assert_array_equal(row2, (recs[0].permute(1, 2, 0) * 255).round().numpy().astype(np.uint8))


def test_rows_and_bad_channels(tmp_path):
    (path,) = write_rows(torch.rand(12, 1, 4, 4), 4, tmp_path / "rows")
    with Image.open(path) as im:
        assert im.size == (side(4, 4), side(3, 4))
    with pytest.raises(ValueError, match="rows of 5"):
        write_rows(torch.rand(12, 1, 4, 4), 5, tmp_path / "x")
    with pytest.raises(ValueError, match="1 or 3"):
        write_samples(torch.rand(4, 2, 4, 4), tmp_path / "x")


def test_latent_traversal_sweeps_one_dimension_per_row(tmp_path):
    m = ImageModality(make_recipe({"path": str(tmp_path), "size": 8}, latent=3))
    vae = VAE(m.build_encoder(), m.build_decoder(), 3)
    z, px = latent_traversal(vae, steps=5, span=2.0, dims=[0, 2])
    assert z.shape == (10, 3) and isinstance(px, Bernoulli)
    assert torch.equal(z[:5, 0], torch.linspace(-2, 2, 5)) and (z[:5, 1:] == 0).all()
    assert torch.equal(z[5:, 2], torch.linspace(-2, 2, 5)) and (z[5:, :2] == 0).all()
    (path,) = m.write_traversal(vae, tmp_path / "traversal", steps=5)
    with Image.open(path) as im:
        assert im.size == (side(5, 8), side(3, 8))   # every dimension: 3 rows
    with pytest.raises(ValueError, match="out of range"):
        latent_traversal(vae, dims=[3])
