"""Reading sentences, WordNet parsing, seeded splits and batches."""

import pytest
import torch

from vaezoo import InputError
from vaezoo.core.errors import RecipeError
from vaezoo_text import read_lines, read_wordnet
from vaezoo_text.data import make_splits, pad_batch

from text_fixtures import fitted_modality, make_recipe, write_corpus, one_thread  # noqa: F401  (one_thread: an autouse fixture)

WORDNET_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def write_wordnet(folder):
    folder.mkdir()
    lines = {
        "data.noun": [
            '00001 03 n 01 cat 0 000 | feline mammal; "the cat sat on the mat"; "a cat"  \n',
            '00002 03 n 01 dog 0 000 | canine; "the dog barked all night long"; "the cat sat on the mat"  \n',
        ],
        "data.verb": ['00003 29 v 01 run 0 000 | move fast; "he ran to the station"  \n',
                      '00004 29 v 01 walk 0 000 | no example here  \n'],
        "data.adj": ['00005 00 a 01 red 0 000 | of the colour of blood; "a red sky at night"  \n'],
        "data.adv": ['00006 02 r 01 fast 0 000 | quickly; "she   ran very fast indeed"  \n'],
    }
    for name, body in lines.items():
        (folder / name).write_text(WORDNET_HEADER + "".join(body), encoding="utf-8")
    return folder


def test_wordnet_examples_follow_the_parsing_rule(tmp_path):
    folder = write_wordnet(tmp_path / "wn")
    assert read_wordnet(folder) == [
        "the cat sat on the mat",            # "a cat" is shorter than 15 characters
        "the dog barked all night long",
        "the cat sat on the mat",            # repeats are kept here; make_splits removes them
        "he ran to the station",
        "a red sky at night",
        "she ran very fast indeed",          # whitespace runs collapsed
    ]
    (folder / "data.adv").unlink()
    with pytest.raises(InputError, match="data.adv"):
        read_wordnet(folder)


def test_read_lines_skips_blank_lines_and_names_bad_files(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("one  sentence \n\n  two\n", encoding="utf-8")
    assert read_lines(path) == ["one sentence", "two"]
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(InputError, match="bad.txt: not UTF-8"):
        read_lines(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="is a folder"):
        read_lines(tmp_path)


def test_splits_are_seeded_disjoint_and_deduplicated(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 200)
    corpus.write_text(corpus.read_text() * 2)                 # every sentence twice
    cfg = make_recipe(corpus).data
    splits = make_splits(cfg)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [160, 20, 20]
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["validation"]) & set(splits["test"])
    assert make_splits(cfg) == splits                          # same seed, same split
    other = make_splits(make_recipe(corpus, data={"split_seed": 1}).data)
    assert other["test"] != splits["test"]
    fewer = make_splits(make_recipe(corpus, data={"max_train_examples": 50}).data)
    assert len(fewer["train"]) == 50 and fewer["test"] == splits["test"]


def test_recipe_checks_name_the_bad_key(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 50)
    with pytest.raises(RecipeError, match=r"\[model\].*use_latent = false"):
        make_recipe(corpus, model={"z_init_state": False, "z_every_step": False})
    with pytest.raises(RecipeError, match=r"\[generate\] strategy"):
        make_recipe(corpus, generate={"strategy": "nucleus"})
    with pytest.raises(RecipeError, match="path does not exist"):
        make_recipe(tmp_path / "missing.txt")


def test_batches_pad_with_pad_and_end_in_eos(tmp_path):
    modality = fitted_modality(tmp_path, 100)
    tok = modality.tokenizer
    batch = modality.collate([modality.dataset("train")[i] for i in range(5)])
    assert set(batch) == {"x", "mask", "length"}
    n, t = batch["x"].shape
    assert batch["x"].dtype == torch.long and batch["mask"].dtype == torch.bool and t == int(batch["length"].max())
    for row, length in zip(batch["x"], batch["length"].tolist()):
        assert row[length - 1] == tok.eos_token_id and (row[length:] == tok.pad_token_id).all()
    assert batch["mask"].sum(1).tolist() == batch["length"].tolist()
    inputs = modality.load_inputs(["The cat saw a zebra", "  a dog  "])
    assert inputs["length"].tolist() == [6, 3]
    with pytest.raises(InputError, match="input 2 is empty"):
        modality.load_inputs(["fine", "   "])
    with pytest.raises(ValueError, match="no sentences"):
        pad_batch([], 0)


def test_separate_split_files_and_too_small_corpora(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 50)
    valid = write_corpus(tmp_path / "valid.txt", 7, seed=1)
    splits = make_splits(make_recipe(corpus, data={"validation_path": str(valid)}).data)
    assert splits["validation"] == valid.read_text().splitlines() and len(splits["test"]) == 5
    assert len(splits["train"]) == 45                          # nothing held out for validation
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InputError, match="empty.txt: no test sentences"):
        make_splits(make_recipe(corpus, data={"test_path": str(tmp_path / "empty.txt")}).data)
    (tmp_path / "one.txt").write_text("just one sentence\n")
    with pytest.raises(InputError, match="too few for a validation split"):
        make_splits(make_recipe(tmp_path / "one.txt").data)
