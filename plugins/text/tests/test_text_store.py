"""The token store: the splits tokenized once into memory-mapped files in the run directory."""

from __future__ import annotations

import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch

from vaezoo import InputError
from vaezoo_text import TextModality
from vaezoo_text.data import iter_labelled_lines, plan_splits, read_lines
from vaezoo_text.store import STORE_FOLDER, TokenStore

from text_fixtures import fitted_modality, make_recipe, make_sentences, one_thread  # noqa: F401  (one_thread: an autouse fixture)


def expected_items(modality, split):
    """What the store must hold: the split's sentences tokenized in memory, as before the store."""
    return [torch.tensor(ids) for ids in modality.encode_sentences(modality.sentences(split))]


def test_the_store_holds_each_split_tokenized_as_in_memory(tmp_path):
    modality = fitted_modality(tmp_path, n=300)
    folder = tmp_path / "run" / STORE_FOLDER
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["label_names"] is None
    for split in ("train", "validation", "test"):
        dataset = modality.dataset(split)
        assert isinstance(dataset, TokenStore)
        expected = expected_items(modality, split)
        assert len(dataset) == len(expected) == manifest["counts"][split] > 0
        assert all(torch.equal(dataset[i], expected[i]) and dataset[i].dtype == torch.long for i in range(len(dataset)))
        assert torch.equal(dataset[-1], expected[-1])
        with pytest.raises(IndexError):
            dataset[len(dataset)]
        offsets = np.fromfile(folder / f"{split}.offsets", dtype=np.int64)
        assert offsets[0] == 0 and offsets[-1] * 2 == (folder / f"{split}.tokens").stat().st_size
    # The token files hold ids end to end, EOS closing each sentence.
    tokens = np.fromfile(folder / "train.tokens", dtype=np.uint16)
    assert (tokens == modality.tokenizer.eos_token_id).sum() == len(modality.dataset("train"))


def test_labels_are_stored_as_class_ids(tmp_path):
    corpus = tmp_path / "tab.txt"
    sentences = make_sentences(120, 0)
    corpus.write_text("".join(f"{'long' if len(s) > 30 else 'short'}\t{s}\n" for s in sentences), encoding="utf-8")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    modality = TextModality(make_recipe(corpus, data={"labels": "tab"}), run_dir)
    modality.fit(run_dir)
    assert modality.label_names == ["long", "short"]
    for split in ("train", "test"):
        items = [modality.dataset(split)[i] for i in range(len(modality.dataset(split)))]
        labels = modality.sentence_labels(split)
        assert [modality.label_names[int(item["label"])] for item in items] == labels
        assert all(torch.equal(item["x"], ids) for item, ids in zip(items, expected_items(modality, split)))
    # A run moved without its corpus still reads its store: the classes and the test split.
    test = [modality.dataset("test")[i] for i in range(len(modality.dataset("test")))]
    corpus.unlink()
    again = TextModality(modality.recipe, run_dir)
    assert again.label_names == ["long", "short"] and again._plan is None
    again_test = again.dataset("test")
    assert all(torch.equal(again_test[i]["x"], item["x"]) for i, item in enumerate(test))


def test_a_store_is_built_once_and_rebuilt_when_its_data_changes(tmp_path):
    modality = fitted_modality(tmp_path, n=200)
    folder = tmp_path / "run" / STORE_FOLDER
    built = (folder / "manifest.json").stat().st_mtime_ns
    again = TextModality(modality.recipe, tmp_path / "run")
    assert len(again.dataset("train")) == len(modality.dataset("train"))
    assert (folder / "manifest.json").stat().st_mtime_ns == built          # reused, not rebuilt
    assert again._plan is None                                          # and the corpus was not read
    (tmp_path / "corpus.txt").write_text("\n".join(make_sentences(260, 0)) + "\n", encoding="utf-8")
    changed = TextModality(modality.recipe, tmp_path / "run")
    assert len(changed.dataset("train")) > len(modality.dataset("train"))
    assert json.loads((folder / "manifest.json").read_text())["counts"]["train"] == len(changed.dataset("train"))


def test_a_crash_while_building_leaves_no_half_store(tmp_path, monkeypatch):
    modality = fitted_modality(tmp_path, n=200)
    run_dir = tmp_path / "run"
    expected = [modality.dataset("test")[i] for i in range(len(modality.dataset("test")))]
    (run_dir / STORE_FOLDER / "manifest.json").unlink()     # as if a build had died before its last write
    partial = run_dir / f".{STORE_FOLDER}.partial"
    partial.mkdir()
    (partial / "train.tokens").write_bytes(b"\x00" * 7)  # and left a staging folder behind
    fresh = TextModality(modality.recipe, run_dir)
    assert len(fresh.dataset("test")) == len(expected)
    assert all(torch.equal(fresh.dataset("test")[i], ids) for i, ids in enumerate(expected))
    assert not partial.exists() and (run_dir / STORE_FOLDER / "manifest.json").is_file()


def test_a_run_folder_that_cannot_be_written_gets_the_store_in_a_temporary_folder(tmp_path, monkeypatch):
    import vaezoo.core.data_cache as data_cache

    modality = fitted_modality(tmp_path, n=150)
    run_dir = tmp_path / "run"
    real, calls = data_cache._build, []

    def read_only_run_dir(folder, *args):
        calls.append(folder)
        if folder.parent == run_dir:
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(folder, *args)

    monkeypatch.setattr(data_cache, "_build", read_only_run_dir)
    (run_dir / STORE_FOLDER / "manifest.json").unlink()
    fresh = TextModality(modality.recipe, run_dir)
    assert len(fresh.dataset("validation")) == len(modality.dataset("validation"))
    assert calls[0].parent == run_dir and calls[1].parent != run_dir and (calls[1] / "manifest.json").is_file()


def test_a_worker_gets_the_store_without_its_arrays(tmp_path):
    modality = fitted_modality(tmp_path, n=150)
    dataset = modality.dataset("train")
    dataset[0]                                    # opens the memory maps
    copy = pickle.loads(pickle.dumps(dataset))    # what a spawned DataLoader worker receives
    assert copy._maps is None and torch.equal(copy[3], dataset[3])


def test_streamed_lines_split_as_splitlines_does(tmp_path):
    path = tmp_path / "odd.txt"
    text = "one\r\ntwo\rthree\u2028four\n\n  five   six \nlast"
    path.write_bytes(text.encode("utf-8"))
    assert read_lines(path) == [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(InputError, match=r"bad.txt: not UTF-8 text \(invalid start byte at byte 14\)"):
        read_lines(bad)


@pytest.mark.parametrize("labels, message", [(3, "3 labels, but .* has 4 sentences"), (5, "5 labels, but .* has 4 sentences")])
def test_a_label_file_of_another_length_is_refused_with_both_counts(tmp_path, labels, message):
    sentences, label_file = tmp_path / "s.txt", tmp_path / "l.txt"
    sentences.write_text("a\nb\n\nc\nd\n")
    label_file.write_text("\n".join("x" * labels) + "\n")
    with pytest.raises(InputError, match=message):
        list(iter_labelled_lines(sentences, label_file))


def test_a_split_plan_costs_a_byte_per_sentence(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(make_sentences(400, 1) + make_sentences(50, 1)) + "\n", encoding="utf-8")  # 50 repeats
    plan = plan_splits(make_recipe(corpus).data)
    assert plan.codes.dtype == np.uint8 and len(plan.codes) == 450 and plan.label_ids is None
    assert (plan.codes[400:] == 255).all()                                # repeats are unused
    assert sum(plan.sizes.values()) == 400


def test_tokenization_runs_in_batches(tmp_path, monkeypatch):
    """The store tokenizes a few thousand sentences per call (the tokenizers library's batch
    encoding), never the whole split at once."""
    import vaezoo_text.store as store

    monkeypatch.setattr(store, "ENCODE_BATCH", 64)
    sizes = []
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_sentences(300, 2)) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    modality = TextModality(make_recipe(corpus), run_dir)
    encode = modality.encode_sentences
    monkeypatch.setattr(modality, "encode_sentences", lambda s: sizes.append(len(s)) or encode(s))
    modality.fit(run_dir)
    train = len(modality.dataset("train"))
    assert max(sizes) == 64 and sum(sizes) == 300 and train == 240
    assert os.path.getsize(run_dir / STORE_FOLDER / "train.offsets") == 8 * (train + 1)


def test_encoding_gives_the_ids_of_a_transformers_call(tmp_path):
    """``encode`` asks the tokenizers backend directly; the ids are those of transformers'
    truncating call, for sentences shorter and longer than max_length."""
    from vaezoo_text.tokenizer import encode

    modality = fitted_modality(tmp_path, n=150)
    tokenizer = modality.tokenizer
    sentences = make_sentences(40, 3) + [" ".join(make_sentences(6, 4))]   # the last one is cut
    expected = tokenizer(sentences, add_special_tokens=False, truncation=True, max_length=15)["input_ids"]
    got = encode(tokenizer, sentences, 16)
    assert got == [row + [tokenizer.eos_token_id] for row in expected]
    assert len(got[-1]) == 16 and max(len(row) for row in got[:-1]) < 16
