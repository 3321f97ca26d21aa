"""The core's reader of Hugging Face data sets on disk (plugin API 1.6): splits, batches of
rows with their numbers and features, and one clear error for anything else."""

from __future__ import annotations

import pytest

from vaezoo import HFBatch, InputError, hf_batches, hf_columns, hf_splits

datasets = pytest.importorskip("datasets")


def saved(tmp_path, rows=10):
    features = datasets.Features({"value": datasets.Value("float32"),
                                  "kind": datasets.ClassLabel(names=["cat", "dog", "eel"])})
    data = {"value": [float(i) for i in range(rows)], "kind": [i % 3 for i in range(rows)]}
    return datasets.Dataset.from_dict(data, features=features)


def test_a_saved_dataset_reads_in_batches_with_row_numbers_and_class_names(tmp_path):
    saved(tmp_path, 10).save_to_disk(str(tmp_path / "one"))
    splits = hf_splits(tmp_path / "one")
    assert list(splits) == ["train"] and all(f.suffix == ".arrow" for f in splits["train"])
    batches = list(hf_batches(splits["train"], ["kind", "value"], rows=4))
    assert all(isinstance(b, HFBatch) for b in batches)
    assert [b.columns["value"] for b in batches] == [[float(i) for i in range(10)]]   # an Arrow shard's own batches
    assert batches[0].first_row == 1 and len(batches[0]) == 10
    assert batches[0].class_names("kind") == ["cat", "dog", "eel"] and batches[0].class_names("value") is None
    assert hf_columns(splits["train"][0]) == ["value", "kind"]
    everything = next(hf_batches(splits["train"]))
    assert list(everything.columns) == ["value", "kind"]


def test_a_dataset_dict_gives_its_validation_and_test_splits(tmp_path):
    datasets.DatasetDict({"train": saved(tmp_path, 6), "dev": saved(tmp_path, 3), "test": saved(tmp_path, 2),
                          "extra": saved(tmp_path, 1)}).save_to_disk(str(tmp_path / "dict"))
    splits = hf_splits(tmp_path / "dict")
    assert sorted(splits) == ["test", "train", "validation"]
    assert sum(len(b) for b in hf_batches(splits["validation"], ["value"])) == 3


def test_parquet_files_read_in_name_order_a_batch_of_rows_at_a_time(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    saved(tmp_path, 7).to_parquet(str(folder / "b.parquet"))
    saved(tmp_path, 5).to_parquet(str(folder / "a.parquet"))
    files = hf_splits(folder)["train"]
    assert [f.name for f in files] == ["a.parquet", "b.parquet"]
    batches = list(hf_batches(files, ["value"], rows=3))
    assert [(b.file.name, b.first_row, len(b)) for b in batches] == [
        ("a.parquet", 1, 3), ("a.parquet", 4, 2), ("b.parquet", 1, 3), ("b.parquet", 4, 3), ("b.parquet", 7, 1)]
    assert batches[0].class_names("kind") == ["cat", "dog", "eel"]   # Parquet keeps the features too
    assert hf_splits(folder / "a.parquet") == {"train": [folder / "a.parquet"]}


def test_anything_else_is_one_input_error(tmp_path):
    saved(tmp_path).save_to_disk(str(tmp_path / "one"))
    files = hf_splits(tmp_path / "one")["train"]
    with pytest.raises(InputError, match=r"no column 'words' \(the columns: value, kind\); set data.text_column"):
        next(hf_batches(files, ["words"], hint="set data.text_column"))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{}")
    (tmp_path / "bad.parquet").write_text("not parquet")
    for path, message in [(tmp_path / "notes.txt", "takes a saved dataset folder, a .parquet file"),
                          (tmp_path / "nowhere", "not found"),
                          (tmp_path / "empty", "neither a saved Hugging Face dataset"),
                          (tmp_path / "broken", "not a saved Hugging Face dataset")]:
        with pytest.raises(InputError, match=message):
            hf_splits(path)
    with pytest.raises(InputError, match="bad.parquet: cannot read it"):
        list(hf_batches([tmp_path / "bad.parquet"]))
    files[0].write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read it"):
        list(hf_batches(files))
