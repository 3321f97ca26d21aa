"""Images from a Hugging Face dataset on disk (data.format = "hf"): save_to_disk folders and
Parquet files, decoded once as the folder source decodes files, memory-mapped from the run."""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vaezoo import InputError
from vaezoo.cli import main
from vaezoo_image import ImageModality

from image_helpers import make_recipe, write_png

datasets = pytest.importorskip("datasets")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CLASSES = ["bag", "shoe"]


def drawn(n: int, seed: int) -> list[np.ndarray]:
    """``n`` RGB images of varied, non-square sizes (so cropping and resizing both happen)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(9 + i % 4, 12 + i % 3, 3), dtype=np.uint8) for i in range(n)]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def features(label: bool = True):
    image = {"image": datasets.Image()}
    return datasets.Features({**image, "label": datasets.ClassLabel(names=CLASSES)} if label else image)


def dataset(arrays: list[np.ndarray], labels: list[int] | None = None):
    """A Dataset of the arrays as PNG images (in memory: no file paths), with ClassLabel labels."""
    rows: dict[str, list] = {"image": [{"bytes": png(a), "path": None} for a in arrays]}
    if labels is not None:
        rows["label"] = labels
    return datasets.Dataset.from_dict(rows, features=features(labels is not None))


def modality(path, run_dir=None, **data) -> ImageModality:
    recipe = make_recipe({"path": str(path), "size": 8, "color": "rgb", "format": "hf", **data})
    if run_dir is not None:
        run_dir.mkdir(exist_ok=True)
    return ImageModality(recipe, run_dir)


def same_data(a: ImageModality, b: ImageModality) -> None:
    """Both give the same splits: the same pixels, labels and class names."""
    for split in ("train", "validation", "test"):
        x, y = a.dataset(split), b.dataset(split)
        assert len(x) == len(y) and (len(x) > 0 or split != "train")
        for i in range(len(x)):
            assert torch.equal(x[i]["x"], y[i]["x"]) and x[i].get("label") == y[i].get("label")
    assert a.label_names == b.label_names


def test_a_saved_dataset_decodes_as_the_same_pngs_in_a_folder_and_trains(tmp_path):
    arrays = drawn(30, seed=1)
    labels = [0] * 16 + [1] * 14              # folder order: bag/00..15, then shoe/00..13
    for i, array in enumerate(arrays):
        write_png(tmp_path / "folder" / CLASSES[labels[i]] / f"{i:02d}.png", array)
    dataset(arrays, labels).save_to_disk(str(tmp_path / "saved"))

    hf = modality(tmp_path / "saved", tmp_path / "run")
    same_data(hf, modality(tmp_path / "folder", format="folder"))
    assert hf.label_names == CLASSES
    cache = tmp_path / "run" / "image-data" / "hf-train"
    assert json.loads((cache / "manifest.json").read_text())["shape"] == [30, 3, 8, 8]
    assert (cache / "images.u8").stat().st_size == 30 * 3 * 8 * 8
    assert np.fromfile(cache / "labels.i64", dtype=np.int64).tolist() == labels
    built = (cache / "images.u8").stat().st_mtime_ns
    modality(tmp_path / "saved", tmp_path / "run").dataset("train")     # decoded once, read again
    assert (cache / "images.u8").stat().st_mtime_ns == built

    recipe = tmp_path / "hf.toml"
    recipe.write_text('modality = "image"\n[data]\npath = "saved"\nsize = 8\ncolor = "rgb"\n[model]\nchannels = [4]\n'
                      "[train]\nepochs = 1\nbatch_size = 8\nmax_steps = 3\nsamples = 0\ntensorboard = false\n"
                      "[eval]\niw_samples = 0\n")         # format = "auto" finds the saved dataset
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "trained"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "trained" / "best.safetensors").is_file()
    assert (tmp_path / "trained" / "image-data" / "hf-train" / "images.u8").is_file()


def test_the_cache_is_written_a_chunk_at_a_time(tmp_path, monkeypatch):
    import vaezoo_image.hf_source as hf_source

    dataset(drawn(11, seed=2)).save_to_disk(str(tmp_path / "saved"))
    whole = modality(tmp_path / "saved", tmp_path / "a")
    monkeypatch.setattr(hf_source, "IDX_CHUNK", 4)      # two full chunks and a short one
    chunked = modality(tmp_path / "saved", tmp_path / "b")
    same_data(whole, chunked)
    assert whole.label_names is None and "label" not in whole.dataset("train")[0]   # no label column: no labels


def test_a_dataset_dict_brings_its_splits_and_class_names(tmp_path):
    train, validation, test = drawn(20, seed=3), drawn(6, seed=4), drawn(5, seed=5)
    datasets.DatasetDict({"train": dataset(train, [i % 2 for i in range(20)]),
                          "validation": dataset(validation, [1] * 6),
                          "test": dataset(test, [0, 1, 0, 1, 1])}).save_to_disk(str(tmp_path / "dd"))
    hf = modality(tmp_path / "dd", tmp_path / "run", size=9, max_train_examples=7, binarize="dynamic")
    assert [len(hf.dataset(s)) for s in ("train", "validation", "test")] == [7, 6, 5]
    assert hf.label_names == CLASSES
    assert [int(hf.dataset("test")[i]["label"]) for i in range(5)] == [0, 1, 0, 1, 1]
    for split in ("train", "test"):
        x = hf.dataset(split)[0]["x"]
        assert x.shape == (3, 9, 9) and set(x.unique().tolist()) <= {0.0, 1.0}
    # The test split's first image, through the folder source's decoding, before binarization.
    write_png(tmp_path / "one" / "0.png", test[0])
    plain = modality(tmp_path / "dd", tmp_path / "run", size=9)
    folder = modality(tmp_path / "one", format="folder", size=9, test_fraction=0.5)
    assert torch.equal(plain.dataset("test")[0]["x"], folder.dataset("train")[0]["x"])
    named = modality(tmp_path / "dd", tmp_path / "run", label_names=["b", "s"])
    assert named.label_names == ["b", "s"]
    assert modality(tmp_path / "dd", labels=False).dataset("validation")[0].keys() == {"x"}


def test_a_dataset_dict_without_validation_holds_it_out_of_train(tmp_path):
    datasets.DatasetDict({"train": dataset(drawn(20, seed=6)),
                          "test": dataset(drawn(4, seed=7))}).save_to_disk(str(tmp_path / "dd"))
    hf = modality(tmp_path / "dd", validation_fraction=0.25)
    assert [len(hf.dataset(s)) for s in ("train", "validation", "test")] == [15, 5, 4]
    train, validation = hf.dataset("train"), hf.dataset("validation")
    assert not set(train.indices) & set(validation.indices)


def test_parquet_files_give_what_the_saved_dataset_gives(tmp_path):
    arrays, labels = drawn(24, seed=8), [i % 2 for i in range(24)]
    dataset(arrays, labels).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "parts").mkdir()
    dataset(arrays[:10], labels[:10]).to_parquet(str(tmp_path / "parts" / "a.parquet"))
    dataset(arrays[10:], labels[10:]).to_parquet(str(tmp_path / "parts" / "b.parquet"))
    saved = modality(tmp_path / "saved", tmp_path / "run")
    same_data(saved, modality(tmp_path / "parts", format="auto"))
    dataset(arrays, labels).to_parquet(str(tmp_path / "all.parquet"))
    same_data(saved, modality(tmp_path / "all.parquet", format="auto"))


def one_line_error(path, message, **data) -> str:
    with pytest.raises(InputError, match=message) as err:
        modality(path, **data).dataset("train")
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_hugging_face_images_are_one_line(tmp_path):
    dataset(drawn(4, seed=9), [0, 1, 0, 1]).save_to_disk(str(tmp_path / "saved"))
    one_line_error(tmp_path / "saved", r"no column 'picture' \(the columns: image, label\); set data.image_column",
                   image_column="picture")
    one_line_error(tmp_path / "saved", r"no column 'kind' \(the columns: image, label\); set data.label_column",
                   label_column="kind")

    rows = [{"bytes": png(a), "path": None} for a in drawn(3, seed=10)]
    rows[1] = {"bytes": b"\x89PNG\r\n\x1a\nnot really", "path": None}
    datasets.Dataset.from_dict({"image": rows}, features=features(False)).save_to_disk(str(tmp_path / "broken"))
    message = one_line_error(tmp_path / "broken", r"row 2, column 'image': cannot read image")
    assert str(tmp_path / "broken") in message and ".arrow" in message

    # An Image cell that names a file instead of holding its bytes (save_to_disk would embed them).
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    there = write_png(tmp_path / "there.png", drawn(1, seed=14)[0])
    cells = pa.array([{"bytes": None, "path": str(there)}, {"bytes": None, "path": str(tmp_path / "nowhere.png")}],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"image": cells}), str(tmp_path / "paths.parquet"))
    one_line_error(tmp_path / "paths.parquet", r"paths.parquet, row 2, column 'image' \(file .*nowhere.png\): "
                   "image file not found")
    write_png(tmp_path / "nowhere.png", drawn(1, seed=15)[0])
    by_path = modality(tmp_path / "paths.parquet", validation_fraction=0.5, test_fraction=0.5)
    write_png(tmp_path / "pair" / "0.png", drawn(1, seed=14)[0])
    write_png(tmp_path / "pair" / "1.png", drawn(1, seed=15)[0])
    same_data(by_path, modality(tmp_path / "pair", format="folder", validation_fraction=0.5, test_fraction=0.5))

    datasets.Dataset.from_dict({"image": [1, 2]}).save_to_disk(str(tmp_path / "numbers"))
    one_line_error(tmp_path / "numbers", r"row 1, column 'image': holds int, not an image; set data.image_column")

    words = {"image": [{"bytes": png(a), "path": None} for a in drawn(2, seed=11)], "label": ["cat", "dog"]}
    datasets.Dataset.from_dict(words, features=datasets.Features({"image": datasets.Image(),
                                                                  "label": datasets.Value("string")})
                               ).save_to_disk(str(tmp_path / "words"))
    one_line_error(tmp_path / "words", r"row 1, column 'label': label 'cat' is not a class index .* data.labels = false")
    assert modality(tmp_path / "words", labels=False).dataset("train")[0].keys() == {"x"}

    empty = datasets.Dataset.from_dict({"image": []}, features=features(False))
    empty.save_to_disk(str(tmp_path / "empty"))
    one_line_error(tmp_path / "empty", "empty: its train split has no rows, so no images")
    one_line_error(tmp_path / "saved", "data.factors = true needs IDX data", factors=True)


def test_without_pyarrow_the_message_says_what_to_install(tmp_path, monkeypatch):
    dataset(drawn(2, seed=12)).save_to_disk(str(tmp_path / "saved"))
    monkeypatch.setitem(sys.modules, "pyarrow", None)       # import pyarrow raises ImportError
    one_line_error(tmp_path / "saved", r"pip install pyarrow \(or vaezoo\[hf\]\)")


def test_a_bad_hf_recipe_exits_2_with_one_line_and_leaves_no_run(tmp_path):
    dataset(drawn(6, seed=13), [0] * 6).save_to_disk(str(tmp_path / "saved"))
    recipe = tmp_path / "bad.toml"
    recipe.write_text('modality = "image"\n[data]\npath = "saved"\nformat = "hf"\nimage_column = "img"\nsize = 8\n'
                      "[model]\nchannels = [4]\n[train]\nepochs = 1\nbatch_size = 4\nsamples = 0\ntensorboard = false\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    error = result.output.split("error: ")           # before it: the run directory line, a cleared bar
    assert len(error) == 2 and "\n" not in error[1].strip()
    assert error[1].startswith(f"{tmp_path / 'saved'}/data-00000-of-00001.arrow: no column 'img' (the columns: "
                               "image, label); set data.image_column")
    assert not run.exists()
