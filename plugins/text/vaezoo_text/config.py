"""The text modality's recipe sections: [data], [tokenizer], [model] and [generate]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vaezoo import option


@dataclass
class DataConfig:
    path: Path = option(
        help="a UTF-8 text file with one sentence per line, or (format = 'wordnet') the WordNet folder "
        "holding data.noun, data.verb, data.adj and data.adv",
        must_exist=True,
    )
    format: Literal["lines", "wordnet", "hf"] = option(
        "lines", help="'lines': one sentence per line; 'wordnet': the quoted example sentences of WordNet's glosses; "
        "'hf': a Hugging Face dataset on disk (a save_to_disk folder of a Dataset or DatasetDict, or Parquet files), "
        "read with pyarrow, its sentences in text_column"
    )
    text_column: str = option("text", help="format 'hf': the column of sentences")
    label_column: str = option("label", help="labels = 'column' (format 'hf'): the column of classes "
                               "(a ClassLabel column gives its names)")
    validation_path: Path | None = option(
        None, must_exist=True, help="a file of validation sentences (format 'lines'); default: held out of path"
    )
    test_path: Path | None = option(
        None, must_exist=True, help="a file of test sentences (format 'lines'); default: held out of path"
    )
    validation_fraction: float = option(0.05, gt=0.0, max=0.5, help="share of the sentences held out for validation")
    test_fraction: float = option(0.05, gt=0.0, max=0.5, help="share of the sentences held out for testing")
    split_seed: int = option(0, min=0, help="seed of the held-out splits (kept apart from the training seed)")
    deduplicate: bool = option(True, help="drop repeated sentences before splitting, so no test sentence is seen in training")
    max_train_examples: int = option(0, min=0, help="train on a seeded random subset of this size (0 = all)")
    labels: Literal["none", "tab", "file", "source", "column"] = option(
        "none",
        help="class labels batches carry as \"label\" (classes: the sorted distinct labels of the training split): "
        "'none'; 'tab': each line is LABEL<TAB>sentence; 'file': labels_path (and validation_labels_path / "
        "test_labels_path) hold one label per sentence line; 'source' (format 'wordnet'): the part of speech, "
        "i.e. the data file (noun, verb, adj, adv) the example sentence comes from; 'column' (format 'hf'): "
        "label_column",
    )
    labels_path: Path | None = option(
        None, must_exist=True, help="labels = 'file': one label per line, aligned with the sentences of path"
    )
    validation_labels_path: Path | None = option(
        None, must_exist=True, help="labels = 'file': one label per line, aligned with the sentences of validation_path"
    )
    test_labels_path: Path | None = option(
        None, must_exist=True, help="labels = 'file': one label per line, aligned with the sentences of test_path"
    )

    def check(self) -> None:
        if self.format == "wordnet" and (self.validation_path or self.test_path):
            raise ValueError("validation_path and test_path work with format = 'lines' only; WordNet is split by fraction")
        if self.labels == "source" and self.format != "wordnet":
            raise ValueError("labels = 'source' (the WordNet part of speech) works with format = 'wordnet' only; "
                             "for a text file use labels = 'tab' or 'file'")
        if self.labels in ("tab", "file") and self.format != "lines":
            raise ValueError(f"labels = {self.labels!r} works with format = 'lines' only; "
                             f"for {'WordNet' if self.format == 'wordnet' else 'a Hugging Face dataset'} use labels = "
                             f"{'source' if self.format == 'wordnet' else 'column'!r}")
        if self.labels == "column" and self.format != "hf":
            raise ValueError("labels = 'column' works with format = 'hf' only (a Hugging Face dataset's label_column)")
        if self.format == "hf" and (self.validation_path or self.test_path):
            raise ValueError("validation_path and test_path work with format = 'lines' only; a Hugging Face "
                             "DatasetDict brings its own validation and test splits")
        label_files = (("labels_path", self.labels_path, "path", self.path),
                       ("validation_labels_path", self.validation_labels_path, "validation_path", self.validation_path),
                       ("test_labels_path", self.test_labels_path, "test_path", self.test_path))
        for key, value, sentences_key, sentences in label_files:
            if value is not None and self.labels != "file":
                raise ValueError(f"{key} is read with labels = 'file' only (labels is {self.labels!r}); "
                                 f"set labels = 'file' or remove {key}")
            if self.labels == "file" and sentences is not None and value is None:
                raise ValueError(f"labels = 'file' needs {key}: one label per line of {sentences_key}")
            if value is not None and sentences is None:
                raise ValueError(f"{key} labels the sentences of {sentences_key}, which is not given; "
                                 f"set {sentences_key} or remove {key}")


@dataclass
class TokenizerConfig:
    kind: Literal["word", "bpe"] = option(
        "word", help="'word': whole words and punctuation marks; 'bpe': byte-level BPE (no unknown tokens)"
    )
    vocab_size: int = option(10000, min=8, help="largest vocabulary, the 4 special tokens included")
    min_frequency: int = option(2, min=1, help="words (or BPE merges) seen fewer times in training become <unk>")
    lowercase: bool = option(True, help="lowercase every sentence before tokenizing")
    max_length: int = option(40, min=2, help="tokens per sentence, end-of-sentence included; longer ones are truncated")


@dataclass
class ModelConfig:
    embedding_dim: int = option(256, min=1, help="size of the token embeddings (encoder and decoder each have their own)")
    encoder_hidden: int = option(512, min=1, help="LSTM state size of the encoder (per direction)")
    encoder_layers: int = option(1, min=1, help="stacked LSTM layers in the encoder")
    bidirectional: bool = option(True, help="read each sentence both ways in the encoder")
    decoder_hidden: int = option(512, min=1, help="LSTM state size of the decoder")
    decoder_layers: int = option(1, min=1, help="stacked LSTM layers in the decoder")
    use_latent: bool = option(
        True, help="false: the decoder ignores z, giving an LSTM language model of the same size (the baseline)"
    )
    z_init_state: bool = option(True, help="z sets the decoder's initial LSTM state (through a linear map)")
    z_every_step: bool = option(True, help="z is concatenated to the decoder's input at every step")
    word_dropout: float = option(
        0.25, min=0.0, max=1.0,
        help="training only: share of decoder input tokens replaced by <unk>, so the decoder must lean on z",
    )
    dropout: float = option(0.0, min=0.0, max=0.9, help="dropout on LSTM outputs (between layers and before the softmax)")

    def check(self) -> None:
        if self.use_latent and not (self.z_init_state or self.z_every_step):
            raise ValueError(
                "z_init_state and z_every_step are both false, so the decoder cannot see z; "
                "turn one on, or set use_latent = false for the language-model baseline"
            )


@dataclass
class GenerateConfig:
    strategy: Literal["greedy", "sample", "beam"] = option(
        "greedy", help="how tokens are chosen when decoding samples, reconstructions and interpolations"
    )
    temperature: float = option(1.0, gt=0.0, help="strategy 'sample': softmax temperature (< 1 is more conservative)")
    top_p: float = option(1.0, gt=0.0, max=1.0, help="strategy 'sample': nucleus size (1 = the whole distribution)")
    beam_width: int = option(5, min=1, help="strategy 'beam': hypotheses kept per sentence")
    max_length: int = option(40, min=1, help="tokens generated at most, end-of-sentence included")
    allow_unk: bool = option(
        True, help="false: never generate <unk> (readable output from a word-level vocabulary; scores are unchanged)"
    )
