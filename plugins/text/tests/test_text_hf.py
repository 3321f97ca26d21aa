"""Text from a Hugging Face dataset on disk (data.format = "hf"): save_to_disk folders and
Parquet files, streamed with pyarrow, into the same splits and token store as a text file."""

from __future__ import annotations

import os

import pytest
import torch

from vaezoo import InputError
from vaezoo.core.errors import RecipeError
from vaezoo_text import TextModality
from vaezoo_text.data import read_splits

from text_fixtures import make_recipe, make_sentences, one_thread  # noqa: F401  (one_thread: an autouse fixture)

datasets = pytest.importorskip("datasets")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def features():
    return datasets.Features({"text": datasets.Value("string"), "topic": datasets.ClassLabel(names=["long", "short"])})


def rows(sentences):
    return {"text": sentences, "topic": [0 if len(s) > 30 else 1 for s in sentences]}


def hf_recipe(path, **data):
    return make_recipe(path, data={"format": "hf", **data})


def test_a_saved_dataset_splits_as_the_same_lines_in_a_text_file(tmp_path):
    sentences = make_sentences(200, 0) + make_sentences(20, 0) + [" ", ""]   # repeats and blanks, as in a file
    datasets.Dataset.from_dict({"text": sentences}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "lines.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    assert read_splits(hf_recipe(tmp_path / "saved").data) == read_splits(make_recipe(tmp_path / "lines.txt").data)
    datasets.Dataset.from_dict({"text": sentences}).to_parquet(str(tmp_path / "corpus.parquet"))
    assert read_splits(hf_recipe(tmp_path / "corpus.parquet").data)[0] == read_splits(hf_recipe(tmp_path / "saved").data)[0]


def test_a_dataset_dict_brings_its_splits_and_class_names(tmp_path):
    train, test = make_sentences(150, 0), make_sentences(30, 5)
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(train), features=features()),
                               "test": datasets.Dataset.from_dict(rows(test), features=features())})
    dd.save_to_disk(str(tmp_path / "dd"))
    recipe = hf_recipe(tmp_path / "dd", labels="column", label_column="topic")
    splits, labels = read_splits(recipe.data)
    assert splits["test"] == test and len(splits["train"]) + len(splits["validation"]) == 150
    assert labels["test"] == ["long" if len(s) > 30 else "short" for s in test]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    modality = TextModality(recipe, run_dir)
    modality.fit(run_dir)
    assert modality.label_names == ["long", "short"]
    item = modality.dataset("test")[0]
    assert torch.equal(item["x"], torch.tensor(modality.encode_sentences([test[0]])[0]))
    assert modality.label_names[int(item["label"])] == labels["test"][0]


def test_parquet_folders_are_read_in_file_order(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    first, second = make_sentences(100, 1), make_sentences(100, 2)
    datasets.Dataset.from_dict({"text": second}).to_parquet(str(folder / "b.parquet"))
    datasets.Dataset.from_dict({"text": first}).to_parquet(str(folder / "a.parquet"))
    (tmp_path / "lines.txt").write_text("\n".join(first + second) + "\n", encoding="utf-8")
    assert read_splits(hf_recipe(folder).data) == read_splits(make_recipe(tmp_path / "lines.txt").data)


def test_bad_hugging_face_data_is_one_line(tmp_path):
    datasets.Dataset.from_dict({"sentence": ["a b c"] * 5}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(InputError, match=r"no column 'text' \(the columns: sentence\); set data.text_column"):
        read_splits(hf_recipe(tmp_path / "saved").data)
    datasets.Dataset.from_dict({"text": [1, 2, 3]}).save_to_disk(str(tmp_path / "numbers"))
    with pytest.raises(InputError, match="row 1: column 'text' holds int, not text"):
        read_splits(hf_recipe(tmp_path / "numbers").data)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a saved Hugging Face dataset"):
        read_splits(hf_recipe(tmp_path / "empty").data)
    (tmp_path / "lines.txt").write_text("a\n")
    with pytest.raises(RecipeError, match="labels = 'column' works with format = 'hf' only"):
        make_recipe(tmp_path / "lines.txt", data={"labels": "column"})
