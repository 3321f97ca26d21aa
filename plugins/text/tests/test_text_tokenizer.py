"""Tokenizers: trained with `tokenizers`, saved in the run directory, used through transformers."""

import json

import pytest
from transformers import PreTrainedTokenizerFast

from vaezoo import InputError, VaezooError
from vaezoo_text import TextModality, TokenizerConfig, load_tokenizer, save_tokenizer, train_tokenizer
from vaezoo_text.tokenizer import SPECIAL_TOKENS, decode, encode

from text_fixtures import fitted_modality, make_recipe, make_sentences, write_corpus, one_thread  # noqa: F401  (one_thread: an autouse fixture)

SENTENCES = make_sentences(200) + ["The farmer's dog didn't bark, did it?"]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_round_trip_through_pretrained_tokenizer_fast(tmp_path, kind):
    cfg = TokenizerConfig(kind=kind, vocab_size=400, min_frequency=1, lowercase=True, max_length=64)
    save_tokenizer(train_tokenizer(SENTENCES, cfg), tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    # Anyone can load the run's tokenizer with plain transformers, offline.
    hf = PreTrainedTokenizerFast.from_pretrained(str(tmp_path), local_files_only=True)
    assert isinstance(hf, PreTrainedTokenizerFast)
    assert [hf.pad_token, hf.unk_token, hf.bos_token, hf.eos_token] == SPECIAL_TOKENS
    assert [hf.pad_token_id, hf.unk_token_id, hf.bos_token_id, hf.eos_token_id] == [0, 1, 2, 3]
    tok = load_tokenizer(tmp_path)
    for sentence in ["The old farmer saw the river again.", "The farmer's dog didn't bark, did it?"]:
        ids = encode(tok, [sentence], max_length=64)[0]
        assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
        assert decode(tok, ids) == sentence.lower()
        assert decode(tok, ids) == decode(hf, ids)


def test_unknown_words_lowercasing_and_truncation(tmp_path):
    cfg = TokenizerConfig(kind="word", vocab_size=300, min_frequency=1, lowercase=False, max_length=5)
    save_tokenizer(train_tokenizer(SENTENCES, cfg), tmp_path)
    tok = load_tokenizer(tmp_path)
    ids = encode(tok, ["the zebra saw the cat yesterday again"], max_length=5)[0]
    assert len(ids) == 5 and ids[-1] == tok.eos_token_id             # 4 tokens kept, then EOS
    assert ids[1] == tok.unk_token_id                                # never seen in training
    assert decode(tok, ids) == "the <unk> saw the"                   # <unk> stays visible
    assert encode(tok, ["The"], 5) != encode(tok, ["the"], 5)         # lowercase = false keeps case
    # A bigger vocabulary than the data allows is fine; a smaller one caps it.
    small = train_tokenizer(SENTENCES, TokenizerConfig(kind="word", vocab_size=20, min_frequency=1))
    assert len(small) == 20


def test_fit_saves_the_tokenizer_and_a_new_instance_reads_it(tmp_path):
    modality = fitted_modality(tmp_path)
    run = tmp_path / "run"
    config = json.loads((run / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "</s>" and config["pad_token"] == "<pad>"
    again = TextModality(modality.recipe, run)
    assert again.tokenizer.get_vocab() == modality.tokenizer.get_vocab()
    assert len(again.tokenizer) == len(modality.tokenizer) <= 200


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_example_batch_without_a_run_directory_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    # It used to save the tokenizer into a folder named "None" in the working directory, then fail.
    recipe = make_recipe(write_corpus(tmp_path / "corpus.txt"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VaezooError, match="run directory"):
        TextModality(recipe, None).example_batch(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]
