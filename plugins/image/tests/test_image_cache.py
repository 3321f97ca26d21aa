"""IDX images decoded once into the run directory and read by memory map."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from vaezoo import InputError
from vaezoo_image import ImageModality
from vaezoo_image.data import IDX_CHUNK, read_idx_images, resize_tensor, stream_idx_images

from image_helpers import make_recipe, random_images, write_idx


def modalities(idx_folder, tmp_path, **data):
    """The same recipe with a run directory (memory-mapped cache) and without (in memory)."""
    recipe = make_recipe({"path": str(idx_folder), "validation_fraction": 0.25, **data})
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return ImageModality(recipe, run_dir), ImageModality(recipe)


@pytest.mark.parametrize("data", [{"size": 8}, {"size": 12, "color": "rgb"}])
def test_memory_mapped_splits_equal_the_in_memory_ones(idx_folder, tmp_path, data):
    cached, in_memory = modalities(idx_folder, tmp_path, **data)
    for split in ("train", "validation", "test"):
        a, b = cached.dataset(split), in_memory.dataset(split)
        assert len(a) == len(b)
        assert all(torch.equal(a[i]["x"], b[i]["x"]) and a[i]["label"] == b[i]["label"] for i in range(len(a)))
        positions = list(range(len(a)))[::-1]
        assert torch.equal(a.__getitems__(positions)["x"], b.__getitems__(positions)["x"])
    cache = tmp_path / "run" / "image-data"
    manifest = json.loads((cache / "train" / "manifest.json").read_text())
    channels = 3 if data.get("color") == "rgb" else 1
    assert manifest["shape"] == [40, channels, data["size"], data["size"]]
    assert (cache / "train" / "images.u8").stat().st_size == 40 * channels * data["size"] ** 2


def test_the_cache_is_decoded_once_and_again_when_the_file_changes(idx_folder, tmp_path):
    cached, _ = modalities(idx_folder, tmp_path, size=8)
    cached.dataset("test")
    images = tmp_path / "run" / "image-data" / "t10k" / "images.u8"
    built = images.stat().st_mtime_ns
    again, _ = modalities(idx_folder, tmp_path, size=8)
    again.dataset("test")
    assert images.stat().st_mtime_ns == built
    write_idx(idx_folder / "t10k-images-idx3-ubyte", random_images(12, 8, seed=9))
    write_idx(idx_folder / "t10k-labels-idx1-ubyte", np.arange(12) % 4)
    changed, _ = modalities(idx_folder, tmp_path, size=8)
    assert len(changed.dataset("test")) == 12
    assert torch.equal(changed.dataset("test")[11]["x"][0], torch.from_numpy(random_images(12, 8, seed=9)[11]) / 255)


@pytest.mark.parametrize("gz", [False, True])
def test_streaming_decodes_in_chunks_as_the_whole_file(tmp_path, monkeypatch, gz):
    import vaezoo_image.data as data

    monkeypatch.setattr(data, "IDX_CHUNK", 7)          # 40 images: five full chunks and a short one
    path = write_idx(tmp_path / "images-idx3-ubyte", random_images(40, 9, seed=3), gz=gz)
    shape = stream_idx_images(path, 6, "rgb", tmp_path / "out.u8")
    assert shape == (40, 3, 6, 6) and IDX_CHUNK > 7
    streamed = torch.from_numpy(np.fromfile(tmp_path / "out.u8", dtype=np.uint8).reshape(shape))
    assert torch.equal(streamed, resize_tensor(read_idx_images(path), 6, "rgb"))


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00", "not an IDX file"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header truncated"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02" + bytes(5), "ends after"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x02" + bytes(5), "longer than its header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02", "expected unsigned-byte images"),
    (gzip.compress(b"\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x02" + bytes(4))[:-6], "corrupt gzip"),
])
def test_a_broken_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        stream_idx_images(path, 2, "gray", tmp_path / "out.u8")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
