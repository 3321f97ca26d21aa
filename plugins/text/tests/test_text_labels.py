"""Class labels: data.labels = 'tab' | 'file' | 'source', label_names, batches' "label", errors."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import vaezoo
from vaezoo import InputError
from vaezoo.cli import main
from vaezoo.core.errors import RecipeError
from vaezoo_text import TextModality
from vaezoo_text.data import make_splits, read_splits

from text_fixtures import fitted_modality, make_recipe, make_sentences, recipe_text, one_thread  # noqa: F401

WORDNET = Path("/usr/share/wordnet")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def topic(sentence: str) -> str:
    """A label that the sentence itself decides: who acts (animal or person)."""
    return "animal" if sentence.lower().startswith(("the cat", "the dog")) else "person"


def write_tab_corpus(path: Path, n: int = 200, seed: int = 0) -> list[str]:
    sentences = make_sentences(n, seed)
    path.write_text("".join(f"{topic(s)}\t{s}\n" for s in sentences), encoding="utf-8")
    return sentences


def labelled_modality(tmp_path: Path, corpus: Path, **data) -> TextModality:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    modality = TextModality(make_recipe(corpus, data=data), run_dir)
    modality.fit(run_dir)
    return modality


def assert_batches_carry(modality: TextModality, split: str, expected: list[str]) -> None:
    """Every item and the collated batch of ``split`` carry the class ids of ``expected``."""
    names = modality.label_names
    dataset = modality.dataset(split)
    assert len(dataset) == len(expected)
    batch = modality.collate([dataset[i] for i in range(len(dataset))])
    assert batch["label"].dtype == torch.long and batch["label"].shape == (len(expected),)
    assert [names[i] for i in batch["label"].tolist()] == expected
    assert batch["x"].shape[0] == len(expected) and batch["mask"].sum(1).tolist() == batch["length"].tolist()


def test_tab_labels_follow_each_sentence_and_keep_the_unlabelled_split(tmp_path):
    sentences = write_tab_corpus(tmp_path / "tab.txt")
    (tmp_path / "plain.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    modality = labelled_modality(tmp_path, tmp_path / "tab.txt", labels="tab")
    assert modality.label_names == ["animal", "person"]
    for split in ("train", "validation", "test"):
        split_sentences = modality.sentences(split)
        assert split_sentences and all("\t" not in s for s in split_sentences)
        assert modality.sentence_labels(split) == [topic(s) for s in split_sentences]
        assert_batches_carry(modality, split, [topic(s) for s in split_sentences])
    # The same sentences land in the same splits as without labels.
    assert make_splits(make_recipe(tmp_path / "plain.txt").data) == {s: modality.sentences(s) for s in
                                                                     ("test", "validation", "train")}
    # Sentences given on the command line carry no labels.
    assert set(modality.load_inputs(["the cat saw the river"])) == {"x", "mask", "length"}


def test_file_labels_align_with_sentences_of_each_file(tmp_path):
    train, valid = make_sentences(120, 0), make_sentences(10, 7)
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (tmp_path / "train.labels").write_text("\n".join(topic(s) for s in train) + "\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("\n".join(valid) + "\n", encoding="utf-8")
    (tmp_path / "valid.labels").write_text("\n".join(topic(s) for s in valid) + "\n", encoding="utf-8")
    modality = labelled_modality(tmp_path, tmp_path / "train.txt", labels="file",
                                 labels_path=str(tmp_path / "train.labels"),
                                 validation_path=str(tmp_path / "valid.txt"),
                                 validation_labels_path=str(tmp_path / "valid.labels"))
    assert modality.label_names == ["animal", "person"]
    assert modality.sentences("validation") == valid
    assert modality.sentence_labels("validation") == [topic(s) for s in valid]
    for split in ("train", "test"):
        assert modality.sentence_labels(split) == [topic(s) for s in modality.sentences(split)]
    assert_batches_carry(modality, "validation", [topic(s) for s in valid])


def write_wordnet(folder: Path) -> Path:
    """A made-up WordNet folder with distinct example sentences in each data file."""
    folder.mkdir()
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    for pos in ("noun", "verb", "adj", "adv"):
        body = "".join(f'{i:05d} 03 x 01 w 0 000 | gloss; "example {i} of a {pos} sentence here"; "short"  \n'
                       for i in range(12))
        (folder / f"data.{pos}").write_text(header + body, encoding="utf-8")
    return folder


def test_source_labels_are_the_wordnet_data_file(tmp_path):
    folder = write_wordnet(tmp_path / "wn")
    modality = labelled_modality(tmp_path, folder, format="wordnet", labels="source")
    assert modality.label_names == ["adj", "adv", "noun", "verb"]
    for split in ("train", "validation", "test"):
        sentences = modality.sentences(split)
        assert modality.sentence_labels(split) == [s.split(" of a ")[1].split()[0] for s in sentences]
    test = modality.sentences("test")
    assert_batches_carry(modality, "test", [s.split(" of a ")[1].split()[0] for s in test])


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="WordNet is not installed at /usr/share/wordnet")
def test_source_labels_of_the_installed_wordnet(tmp_path):
    cfg = make_recipe(WORDNET, data={"format": "wordnet", "labels": "source"}).data
    splits, labels = read_splits(cfg)
    assert sorted(set(labels["train"])) == ["adj", "adv", "noun", "verb"]
    everything = {s: label for split in splits for s, label in zip(splits[split], labels[split])}
    # The first example sentence of data.noun, and the last of data.adv
    assert everything["it was full of rackets, balls and other objects"] == "noun"
    assert everything["people who were wrongfully imprisoned should be released"] == "adv"
    assert splits == make_splits(make_recipe(WORDNET, data={"format": "wordnet"}).data)


def test_the_default_gives_no_labels(tmp_path):
    modality = fitted_modality(tmp_path, 60)
    assert modality.recipe.data.labels == "none" and modality.label_names is None
    assert modality.sentence_labels("train") is None
    assert isinstance(modality.dataset("train")[0], torch.Tensor)
    batch = modality.collate([modality.dataset("train")[i] for i in range(4)])
    assert set(batch) == {"x", "mask", "length"}


def test_label_errors_name_the_file_and_line(tmp_path):
    sentences = write_tab_corpus(tmp_path / "tab.txt", 40)
    lines = (tmp_path / "tab.txt").read_text().splitlines()
    lines[6] = lines[6].replace("\t", " ")
    (tmp_path / "bad.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.txt, line 7: no tab"):
        make_splits(make_recipe(tmp_path / "bad.txt", data={"labels": "tab"}).data)
    (tmp_path / "short.labels").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "plain.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"short.labels: 2 labels, but .*plain.txt has 40 sentences"):
        make_splits(make_recipe(tmp_path / "plain.txt", data={"labels": "file",
                                                              "labels_path": str(tmp_path / "short.labels")}).data)
    (tmp_path / "valid.txt").write_text("animal\tthe dog ran home\nbird\tthe bird flew away\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"valid.txt: the validation label 'bird' is not among the training split's "
                                         r"classes \('animal', 'person'\)"):
        make_splits(make_recipe(tmp_path / "tab.txt", data={"labels": "tab", "validation_path": str(tmp_path / "valid.txt")}).data)
    with pytest.raises(RecipeError, match=r"\[data\].*'source'.*format = 'wordnet' only"):
        make_recipe(tmp_path / "plain.txt", data={"labels": "source"})
    with pytest.raises(RecipeError, match=r"\[data\].*labels = 'file' needs labels_path"):
        make_recipe(tmp_path / "plain.txt", data={"labels": "file"})
    with pytest.raises(RecipeError, match=r"\[data\].*labels_path is read with labels = 'file' only"):
        make_recipe(tmp_path / "plain.txt", data={"labels_path": str(tmp_path / "short.labels")})


@pytest.mark.parametrize("case", ["no-tab", "count", "unknown", "source-for-lines"])
def test_bad_label_inputs_exit_2_with_one_line(tmp_path, case):
    sentences = write_tab_corpus(tmp_path / "tab.txt", 40)
    (tmp_path / "plain.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    data = {
        "no-tab": {"labels": "tab"},
        "count": {"labels": "file", "labels_path": str(tmp_path / "short.labels")},
        "unknown": {"labels": "tab", "validation_path": str(tmp_path / "valid.txt")},
        "source-for-lines": {"labels": "source"},
    }[case]
    corpus = tmp_path / ("tab.txt" if data["labels"] == "tab" else "plain.txt")
    if case == "no-tab":
        corpus.write_text(corpus.read_text().replace("\t", " ", 1))
    (tmp_path / "short.labels").write_text("animal\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("bird\tthe bird flew away\n", encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(corpus, data=data))
    result = cli("train", recipe, "--run-dir", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    expected = {
        "no-tab": "tab.txt, line 1: no tab",
        "count": "short.labels: 1 labels, but",
        "unknown": "the validation label 'bird' is not among the training split's classes ('animal', 'person')",
        "source-for-lines": "labels = 'source' (the WordNet part of speech) works with format = 'wordnet' only",
    }[case]
    assert expected in errors[0]
    if case == "count":
        assert "plain.txt has 40 sentences" in errors[0]


def test_a_labelled_run_latent_map_names_the_classes(tmp_path):
    write_tab_corpus(tmp_path / "tab.txt", 120)
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "tab.txt", data={"labels": "tab"}))
    result = cli("train", recipe, "--run-dir", tmp_path / "run", "--no-progress", "--set", "train.epochs=1",
                 "--set", "train.samples=0", "--set", "eval.at_end=false")
    assert result.exit_code == 0, result.output
    result = cli("latent-map", tmp_path / "run", "--split", "test", "--out", tmp_path / "map", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "vs labels: adjusted Rand index" in result.output
    figures = json.loads((tmp_path / "map" / "test-pca.json").read_text())
    assert figures["label_names"] == ["animal", "person"] and figures["color_by"] == "label"
    rows = (tmp_path / "map" / "test-pca.csv").read_text().splitlines()[1:]
    assert len(rows) == 12 and {row.split(",")[2] for row in rows} <= {"0", "1"}


def test_a_conditional_sentence_vae_trains_and_samples_a_chosen_class(tmp_path):
    """[condition] on text: the class embedding joins z at the decoder (and the encoder); the
    samples of each class are generated from the same latents."""
    write_tab_corpus(tmp_path / "tab.txt", 120)
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "tab.txt", data={"labels": "tab"}) + "\n[condition]\nenabled = true\n")
    result = cli("train", recipe, "--run-dir", tmp_path / "run", "--no-progress", "--set", "train.epochs=1",
                 "--set", "train.samples=4", "--set", "eval.iw_samples=3")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("prior*")) == \
        ["prior-class0-animal.txt", "prior-class1-person.txt"]
    result = cli("sample", tmp_path / "run", "--condition", "person", "-n", "3", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "s" / "samples-t1-seed0-class1-person.txt").read_text().splitlines()
    assert len(lines) == 3
    run = vaezoo.open_run(tmp_path / "run", device="cpu")
    z = torch.zeros(1, run.vae.latent_dim)
    assert run.vae.condition.names == ["animal", "person"]
    # the decoder's teacher-forced scores of one sentence differ by class: the condition reaches it
    x = run.modality.load_inputs(["the cat sat on the mat ."])
    scores = [float(run.vae.decode(z, c).log_prob(x["x"], x.get("mask"))) for c in (0, 1)]
    assert scores[0] != scores[1]
    result = cli("reconstruct", tmp_path / "run", "the cat sat on the mat .", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--condition" in result.output.strip().splitlines()[-1]
    result = cli("reconstruct", tmp_path / "run", "the cat sat on the mat .", "--condition", "animal",
                 "--as", "person", "--out", tmp_path / "r")
    assert result.exit_code == 0 and (tmp_path / "r" / "reconstructions-as-class1-person.txt").exists(), result.output
    # greedy generation as one TorchScript module, (z, class) -> token ids, the tokenizer beside it
    result = cli("export", tmp_path / "run", "--out", tmp_path / "export")
    assert result.exit_code == 0, result.output
    assert {"decoder.pt", "tokenizer.json", "export.json"} <= {p.name for p in (tmp_path / "export").iterdir()}
    generate = torch.jit.load(str(tmp_path / "export" / "decoder.pt"))
    z = torch.randn(6, run.vae.latent_dim, generator=torch.Generator().manual_seed(0))
    c = torch.tensor([0, 1, 0, 1, 0, 1])
    with torch.no_grad():
        ids = generate(z, c)
        assert torch.equal(ids, run.vae.decode(z, c).mean)
    from tokenizers import Tokenizer

    words = Tokenizer.from_file(str(tmp_path / "export" / "tokenizer.json")).decode(ids[0].tolist())
    assert words.strip() and "<pad>" not in words
    # the encoder: (token ids, lengths, class) -> (mean, logvar), any batch and sentence length
    result = cli("export", tmp_path / "run", "--part", "encoder", "--out", tmp_path / "enc")
    assert result.exit_code == 0, result.output
    encoder = torch.jit.load(str(tmp_path / "enc" / "encoder.pt"))
    inputs = run.modality.load_inputs(["the cat sat on the mat and looked at the dog for a long time .", "a dog ."])
    with torch.no_grad():
        mean, logvar = encoder(inputs["x"], inputs["length"], torch.tensor([0, 1]))
        q = run.vae.encode({**inputs, "label": torch.tensor([0, 1])})
    assert (mean - q.mean).abs().max() <= 1e-4 and (logvar - q.logvar).abs().max() <= 1e-4
    # a model folder carries the tokenizer the run fitted, and samples like the run
    result = cli("export", tmp_path / "run", "--format", "folder", "--out", tmp_path / "shared")
    assert result.exit_code == 0 and (tmp_path / "shared" / "tokenizer.json").exists(), result.output
    result = cli("sample", tmp_path / "shared", "--condition", "person", "-n", "3", "--out", tmp_path / "s2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s2" / "samples-t1-seed0-class1-person.txt").read_text().splitlines() == lines
