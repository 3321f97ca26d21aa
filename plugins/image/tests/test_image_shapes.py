"""The shapes generator (vaezoo_image.shapes), factor values in image batches, and the
`vaezoo disentanglement` / `vaezoo traverse` commands on a tiny image run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vaezoo import InputError
from vaezoo.cli import main
from vaezoo_image import ImageModality, read_idx
from vaezoo_image.shapes import FACTOR_NAMES, ShapeGrid, generate_shapes
from vaezoo_image.shapes import main as shapes_main
from vaezoo_image.writers import PAD

from image_helpers import make_recipe

SIZE = 12
SMALL = dict(size=SIZE, count=120, test_count=40, scales=2, rotations=4, positions=3)   # a grid of 216


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes") / "set"
    generate_shapes(folder, **SMALL)
    return folder


def test_the_generator_writes_counts_factors_and_their_names(shapes):
    info = json.loads((shapes / "factors.json").read_text())
    assert info["names"] == list(FACTOR_NAMES) == ["shape", "scale", "rotation", "x", "y"]
    assert info["sizes"] == [3, 2, 4, 3, 3] and info["values"]["shape"] == ["square", "ellipse", "heart"]
    assert info["values"]["scale"] == [0.5, 1.0] and len(info["values"]["rotation"]) == 4
    images = {p: read_idx(shapes / f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")}
    factors = {p: read_idx(shapes / f"{p}-factors-idx2-ubyte.gz") for p in ("train", "t10k")}
    labels = {p: read_idx(shapes / f"{p}-labels-idx1-ubyte.gz") for p in ("train", "t10k")}
    assert images["train"].shape == (120, SIZE, SIZE) and images["t10k"].shape == (40, SIZE, SIZE)
    assert factors["train"].shape == (120, 5) and factors["t10k"].shape == (40, 5)
    for p in ("train", "t10k"):
        assert (factors[p] < np.array(info["sizes"])).all()                # indices inside the grid
        np.testing.assert_array_equal(labels[p], factors[p][:, 0])         # the label is the shape
    rows = {tuple(r) for r in np.concatenate([factors["train"], factors["t10k"]])}
    assert len(rows) == 160                                                # drawn without replacement: disjoint
    grid = ShapeGrid(SIZE, 2, 4, 3)
    for i in (0, 7, 33):                                                   # each image is its factors' drawing
        np.testing.assert_array_equal(images["train"][i], grid.draw(factors["train"][i]))


def test_the_generator_is_deterministic(shapes, tmp_path):
    generate_shapes(tmp_path / "again", **SMALL)
    for name in ("train-images-idx3-ubyte.gz", "t10k-factors-idx2-ubyte.gz", "factors.json"):
        assert (tmp_path / "again" / name).read_bytes() == (shapes / name).read_bytes()
    generate_shapes(tmp_path / "other", **SMALL, seed=1)
    assert not np.array_equal(read_idx(tmp_path / "other" / "train-factors-idx2-ubyte.gz"),
                              read_idx(shapes / "train-factors-idx2-ubyte.gz"))


def test_every_factor_changes_the_image_and_shapes_stay_in_the_frame():
    grid = ShapeGrid(32, rotations=8)
    base = [2, 3, 1, 5, 5]                                                  # the heart: no rotation looks alike
    image = grid.draw(base)
    assert image.max() == 255 and image.min() == 0 and 0 < (image > 127).mean() < 0.5
    for k in range(5):
        for value in range(grid.sizes[k]):
            if value != base[k]:
                changed = list(base)
                changed[k] = value
                assert not np.array_equal(grid.draw(changed), image), (FACTOR_NAMES[k], value)
    for corner in [(0, 0), (0, 15), (15, 0), (15, 15)]:                     # largest shapes, every rotation, corners
        for shape in range(3):
            for rotation in range(8):
                im = grid.draw([shape, 5, rotation, *corner])
                assert max(im[0].max(), im[-1].max(), im[:, 0].max(), im[:, -1].max()) == 0
    # x moves the shape right, y down
    left, right = grid.draw([0, 5, 0, 0, 8]), grid.draw([0, 5, 0, 15, 8])
    top = grid.draw([0, 5, 0, 8, 0])
    columns = np.arange(32)
    assert (left.sum(0) * columns).sum() / left.sum() < (right.sum(0) * columns).sum() / right.sum()
    assert (top.sum(1) * columns).sum() / top.sum() < 12


def test_the_generator_command_and_its_mistakes(tmp_path, capsys):
    assert shapes_main([str(tmp_path / "s"), "--size", "8", "--count", "10", "--test-count", "5",
                        "--rotations", "2", "--scales", "1", "--positions", "2"]) == 0
    assert "wrote 10 training and 5 test images of 8 x 8" in capsys.readouterr().out
    assert shapes_main([str(tmp_path / "s"), "--size", "8", "--count", "30", "--scales", "1", "--rotations", "1",
                        "--positions", "2"]) == 2
    assert "more than the 12 images of the factor grid 3 x 1 x 1 x 2 x 2" in capsys.readouterr().err
    assert shapes_main([str(tmp_path / "s"), "--size", "4"]) == 2
    assert "size must be at least 8" in capsys.readouterr().err


# -- image data with factors --------------------------------------------------------------------------


def test_image_batches_carry_the_factors(shapes):
    m = ImageModality(make_recipe({"path": str(shapes), "size": SIZE, "factors": True}))
    assert m.factor_names == ["shape", "scale", "rotation", "x", "y"]
    factors = torch.from_numpy(read_idx(shapes / "train-factors-idx2-ubyte.gz")).long()
    train = m.dataset("train")
    item = train[0]
    assert item["factors"].dtype == torch.long and torch.equal(item["factors"], factors[train.indices[0]])
    batch = m.collate(train.__getitems__([0, 1, 2]))                      # the fast path
    assert batch["factors"].shape == (3, 5) and torch.equal(batch["factors"], factors[train.indices[:3]])
    assert torch.equal(batch["label"], batch["factors"][:, 0])
    test = m.dataset("test")
    assert len(test) == 40 and test[39]["factors"].shape == (5,)
    validation = m.dataset("validation")
    assert torch.equal(validation[0]["factors"], factors[validation.indices[0]])

    plain = ImageModality(make_recipe({"path": str(shapes), "size": SIZE}))
    assert "factors" not in plain.dataset("train")[0] and plain.factor_names is None


def test_factors_need_their_files(shapes, tmp_path, idx_folder, class_folder):
    with pytest.raises(InputError, match="train-factors-idx2-ubyte"):
        ImageModality(make_recipe({"path": str(idx_folder), "size": 8, "factors": True})).dataset("train")
    with pytest.raises(InputError, match="not an image folder"):
        ImageModality(make_recipe({"path": str(class_folder), "size": 8, "factors": True})).dataset("train")


# -- the commands on a tiny run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes-run")
    recipe = root / "shapes.toml"
    recipe.write_text(f"""\
modality = "image"
name = "tiny-shapes"
[latent]
dim = 3
[data]
path = "{shapes}"
size = {SIZE}
factors = true
[model]
channels = [4, 8]
[train]
epochs = 1
batch_size = 16
samples = 0
tensorboard = false
[eval]
iw_samples = 0
""")
    result = cli("train", recipe, "--run-dir", root / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return root / "run"


def test_disentanglement_of_a_shapes_run(shapes_run):
    result = cli("disentanglement", shapes_run, "--no-progress")
    assert result.exit_code == 0, result.output
    info = json.loads((shapes_run / "disentanglement.json").read_text())
    assert info["factor_names"] == list(FACTOR_NAMES) and info["factor_values"] == [3, 2, 4, 3, 3]
    assert info["n_examples"] == 40 and info["latent_dim"] == 3
    assert len(info["mig"]["per_factor"]) == 5 and info["dci"]["model"] == "gbt"
    for name in FACTOR_NAMES:
        assert f"  {name} " in result.output

    result = cli("disentanglement", shapes_run, "--set", "data.factors=false")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "no factor values" in result.output


def side(count: int) -> int:
    return count * SIZE + (count + 1) * PAD


def test_traverse_writes_one_row_per_dimension(shapes_run, tmp_path):
    result = cli("traverse", shapes_run, "--steps", 5, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "rows: z0, z1, z2 (values -3 ... 3, 5 steps, from zeros)" in result.output
    with Image.open(tmp_path / "traversal-zeros.png") as im:
        assert im.size == (side(5), side(3))
    result = cli("traverse", shapes_run, "--dims", "2,0", "--from", "test:4", "--relative", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "traversal-test-4.png") as im:
        assert im.size == (side(9), side(2))
    # An image file as the base, read as the modality reads inputs.
    png = tmp_path / "one.png"
    Image.fromarray(ShapeGrid(SIZE, 2, 4, 3).draw([2, 1, 0, 1, 1])).save(png)
    result = cli("traverse", shapes_run, "--dims", "1", "--from", png, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "traversal-input.png") as im:
        assert im.size == (side(9), side(1))
    result = cli("traverse", shapes_run, "--from", "test:40")
    assert result.exit_code == 2 and "the test split has 40 examples" in result.output
