"""Readers and splits: IDX files, image folders, binarization, command-line inputs."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from vaezoo import InputError
from vaezoo_image import ImageModality, load_image, read_idx

from image_helpers import make_recipe, random_images, write_idx, write_png


def modality(data: dict, **kw) -> ImageModality:
    return ImageModality(make_recipe(data, **kw))


# -- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = random_images(5, 6)
    path = write_idx(tmp_path / "images-idx3-ubyte", images, gz=gz)
    np.testing.assert_array_equal(read_idx(path), images)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x07\x03" + b"\x00" * 20, "not an IDX file"),            # unknown type code
        (b"\x12\x34\x08\x03" + b"\x00" * 20, "not an IDX file"),            # bad magic
        (b"\x00\x00", "not an IDX file"),                                   # too short
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "needs"),             # 2 of 5 bytes
        (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02")[:-6], "corrupt gzip"),
    ],
)
def test_read_idx_corrupt_names_the_file(tmp_path, content, message):
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_splits_labels_and_sizes(idx_folder):
    m = modality({"path": str(idx_folder), "size": 8, "validation_fraction": 0.25})
    train, validation, test = (m.dataset(s) for s in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (30, 10, 10)
    item = train[0]
    assert item["x"].shape == (1, 8, 8) and item["x"].dtype == torch.float32
    assert 0 <= item["x"].min() and item["x"].max() <= 1
    assert item["label"].dtype == torch.long
    # Train and validation come from the train file, disjointly; test from t10k.
    assert not set(train.indices) & set(validation.indices)
    batch = m.collate([test[i] for i in range(10)])
    assert batch["x"].shape == (10, 1, 8, 8) and batch["label"].tolist() == [i % 4 for i in range(10)]


def test_idx_whole_batches_equal_item_by_item(idx_folder):
    """__getitems__ (the fast path the DataLoader takes) builds the batch collate would."""
    from vaezoo.core.data import make_loader

    m = modality({"path": str(idx_folder), "size": 8, "validation_fraction": 0.25})
    train = m.dataset("train")
    positions = [5, 0, 17, 3]
    fast = m.collate(train.__getitems__(positions))
    slow = m.collate([train[p] for p in positions])
    assert torch.equal(fast["x"], slow["x"]) and torch.equal(fast["label"], slow["label"])
    loaded = next(iter(make_loader(train, m.collate, 6, shuffle=True, seed=2)))
    assert loaded["x"].shape == (6, 1, 8, 8) and loaded["label"].shape == (6,)
    binary = modality({"path": str(idx_folder), "size": 8, "binarize": "dynamic"}).dataset("train")
    assert set(binary.__getitems__(positions)["x"].unique().tolist()) <= {0.0, 1.0}


def test_idx_resize_rgb_subset_and_no_labels(idx_folder):
    m = modality({"path": str(idx_folder), "size": 16, "color": "rgb", "labels": False, "max_train_examples": 7})
    train = m.dataset("train")
    assert len(train) == 7
    assert train[0]["x"].shape == (3, 16, 16) and "label" not in train[0]


def test_idx_missing_test_file(idx_folder):
    for f in idx_folder.glob("t10k-*"):
        f.unlink()
    m = modality({"path": str(idx_folder), "size": 8})
    assert len(m.dataset("train")) > 0
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte"):
        m.dataset("test")


def test_idx_label_count_mismatch(idx_folder):
    write_idx(idx_folder / "t10k-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte: expected 10 labels"):
        modality({"path": str(idx_folder), "size": 8}).dataset("test")


def test_dynamic_binarization(idx_folder):
    m = modality({"path": str(idx_folder), "size": 8, "binarize": "dynamic"})
    train, test = m.dataset("train"), m.dataset("test")
    assert set(train[0]["x"].unique().tolist()) <= {0.0, 1.0}
    # Training draws change from pass to pass; evaluation draws are fixed.
    first = train[0]["x"]
    assert any(not torch.equal(first, train[0]["x"]) for _ in range(5))
    assert torch.equal(test[3]["x"], m.dataset("test")[3]["x"])


# -- image folders ---------------------------------------------------------------------------


def test_folder_labels_from_subfolders(class_folder):
    m = modality({"path": str(class_folder), "size": 8, "validation_fraction": 0.25, "test_fraction": 0.25})
    splits = {s: m.dataset(s) for s in ("train", "validation", "test")}
    assert sum(len(d) for d in splits.values()) == 24
    assert len(splits["test"]) == 6 and len(splits["validation"]) == 4
    item = splits["train"][0]
    assert item["x"].shape == (1, 8, 8)
    labels = {int(d[i]["label"]) for d in splits.values() for i in range(len(d))}
    assert labels == {0, 1}   # bag = 0, shoe = 1, sorted by name


def test_folder_split_subfolders_and_class_mapping(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 6), ("test", 2)):
        for c in ("cat", "dog"):
            for i, a in enumerate(random_images(n, 9, seed=len(c))):
                write_png(root / split / c / f"{i}.jpg", a)
    m = modality({"path": str(root), "size": 12, "color": "rgb", "validation_fraction": 0.25})
    assert (len(m.dataset("train")), len(m.dataset("validation")), len(m.dataset("test"))) == (9, 3, 4)
    test = m.dataset("test")
    assert test[0]["x"].shape == (3, 12, 12)
    assert [int(test[i]["label"]) for i in range(4)] == [0, 0, 1, 1]


def test_folder_without_test_split(tmp_path):
    for i, a in enumerate(random_images(4, 8)):
        write_png(tmp_path / "d" / "train" / f"{i}.png", a)
    with pytest.raises(InputError, match="no test split"):
        modality({"path": str(tmp_path / "d"), "size": 8}).dataset("test")


def test_flat_folder_has_no_labels_and_ignores_other_files(tmp_path):
    for i, a in enumerate(random_images(10, 8)):
        write_png(tmp_path / "flat" / f"{i}.png", a)
    (tmp_path / "flat" / "README.txt").write_text("not an image")
    m = modality({"path": str(tmp_path / "flat"), "size": 8})
    train = m.dataset("train")
    assert len(train) == 8 and "label" not in train[0]


def test_folder_corrupt_image_names_the_file(class_folder):
    bad = class_folder / "shoe" / "99.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    m = modality({"path": str(class_folder), "size": 8})
    datasets = [m.dataset(s) for s in ("train", "validation", "test")]
    with pytest.raises(InputError, match="cannot read image") as err:
        for d in datasets:
            for i in range(len(d)):
                d[i]
    assert str(bad) in str(err.value)


def test_folder_image_outside_class_folder(class_folder):
    write_png(class_folder / "stray.png", random_images(1, 8)[0])
    with pytest.raises(InputError, match="stray.png.*class sub-folder"):
        modality({"path": str(class_folder), "size": 8}).dataset("train")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        modality({"path": str(tmp_path / "empty")}).dataset("train")


def test_load_image_crops_to_square(tmp_path):
    wide = np.zeros((10, 30), dtype=np.uint8)
    wide[:, 10:20] = 255        # a white center square: the crop keeps exactly it
    path = write_png(tmp_path / "wide.png", wide)
    assert load_image(path, 10, "gray").min() == 255
    x = load_image(path, 5, "gray")
    assert x.shape == (1, 5, 5) and x.float().mean() > 240   # resampling may blur the edges a little


def test_load_image_modes(tmp_path):
    sixteen = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)   # 0 .. 65535
    x = load_image(write_png(tmp_path / "i16.png", sixteen), 4, "gray")
    assert x[0, 0, 0] == 0 and x[0, -1, -1] == 255 and len(x.unique()) == 16   # rescaled, not clipped
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    x = load_image(write_png(tmp_path / "rgba.png", rgba), 6, "rgb")
    assert x.shape == (3, 6, 6) and (x[0] == 200).all() and (x[1:] == 0).all()


def test_load_inputs(class_folder, tmp_path):
    m = modality({"path": str(class_folder), "size": 8, "binarize": "dynamic"})
    files = [str(p) for p in sorted(class_folder.rglob("*.png"))[:3]]
    batch = m.load_inputs(files)
    assert batch["x"].shape == (3, 1, 8, 8)
    assert set(batch["x"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(batch["x"], m.load_inputs(files)["x"])
    with pytest.raises(InputError, match="nope.png"):
        m.load_inputs([str(tmp_path / "nope.png")])
