"""vaezoo.save_png_grid: the file, its geometry, its pixel values and its mistakes."""

import numpy as np
import pytest
import torch
from PIL import Image

import vaezoo
from vaezoo.core.images import PAD_VALUE


def side(count: int, pixels: int, pad: int = 2) -> int:
    return count * pixels + (count + 1) * pad


def test_a_gray_grid_has_its_geometry_and_values(tmp_path):
    images = torch.rand(7, 1, 5, 4)
    path = vaezoo.save_png_grid(list(images.split(3)), tmp_path / "new" / "grid.png")   # rows of 3, 3, 1
    assert path == tmp_path / "new" / "grid.png" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]                   # no temporary left
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (side(3, 4), side(3, 5))                                   # width, height
        pixels = np.asarray(im)
    for i in range(7):
        r, c = divmod(i, 3)
        top, left = 2 + r * 7, 2 + c * 6
        expected = (images[i, 0] * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(pixels[top : top + 5, left : left + 4], expected)
    # Padding between and around the cells, and where the short last row ends.
    assert (pixels[:2] == PAD_VALUE).all() and (pixels[:, :2] == PAD_VALUE).all()
    assert (pixels[2:7, 6:8] == PAD_VALUE).all()
    assert (pixels[16:21, 6:] == PAD_VALUE).all()


def test_values_are_clamped_and_uint8_cells_kept(tmp_path):
    cells = [torch.tensor([[-1.0, 0.0, 0.5], [1.0, 2.0, float("nan")]]),              # [H, W] floats
             np.full((3, 2, 3), 200, dtype=np.uint8)[:1],                            # [1, H, W] uint8 as is
             torch.full((1, 2, 3), float("inf"))]
    path = vaezoo.save_png_grid([cells], tmp_path / "values.png", pad=1, pad_value=0)
    with Image.open(path) as im:
        assert im.size == (side(3, 3, 1), side(1, 2, 1))
        pixels = np.asarray(im)
    np.testing.assert_array_equal(pixels[1:3, 1:4], [[0, 0, 128], [255, 255, 0]])
    assert (pixels[1:3, 5:8] == 200).all() and (pixels[1:3, 9:12] == 255).all()
    assert pixels.min() == 0 and pixels.max() == 255


def test_rgb_cells_and_explicit_columns(tmp_path):
    rgb = torch.rand(2, 3, 4, 4)
    path = vaezoo.save_png_grid([rgb[:1], rgb[1:]], tmp_path / "rgb.png", columns=3, pad=0)
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (12, 8)
        pixels = np.asarray(im)
    np.testing.assert_array_equal(pixels[4:8, 0:4], (rgb[1].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
    assert (pixels[:, 4:] == PAD_VALUE).all()                                        # columns 2 and 3 stay empty


@pytest.mark.parametrize("rows, message", [
    ([[]], "at least one image"),
    ([torch.rand(2, 2, 4, 4)], "1 or 3"),
    ([[torch.rand(1, 4, 4), torch.rand(1, 4, 5)]], "row 0, column 1: every image of a grid needs the shape"),
    ([[torch.rand(1, 4, 4)], [torch.rand(3, 4, 4)]], "row 1, column 0"),
    ([[torch.zeros(4, 4, dtype=torch.int64)]], "floats in \\[0, 1\\] or uint8"),
])
def test_mistakes_are_value_errors(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        vaezoo.save_png_grid(rows, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())                                              # nothing written


def test_a_row_longer_than_the_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="a row holds 4 images but the grid has 2 columns"):
        vaezoo.save_png_grid([torch.rand(4, 1, 2, 2)], tmp_path / "x.png", columns=2)
