"""The text modality: what vaezoo's core calls to train and use a sentence VAE.

Importing this module is cheap: torch, the tokenizers (transformers) and the data, network
and writer modules load inside the methods that use them, so `vaezoo plugins`,
`vaezoo recipes` and `vaezoo options` read the class's sections without paying for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import vaezoo
from vaezoo import SPLITS, InputError, Modality, VaezooError

from vaezoo_text.config import DataConfig, GenerateConfig, ModelConfig, TokenizerConfig

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset
    from transformers import PreTrainedTokenizerFast

    from vaezoo_text.data import TokenDataset
    from vaezoo_text.networks import SentenceDistribution


def perplexity(nll_nats: float, tokens: int) -> float:
    """Per-token perplexity from a total negative log-likelihood over ``tokens`` predicted
    tokens (EOS counts: the model predicts where each sentence ends)."""
    if tokens <= 0:
        raise ValueError(f"perplexity needs at least one token, got {tokens}")
    return math.exp(nll_nats / tokens)


EXAMPLE_SENTENCES = [
    "the cat sat on the mat .",
    "a dog ran across the quiet street .",
    "she read the letter twice before answering .",
    "they planted trees along the river bank .",
]


class TextModality(Modality):
    name = "text"
    api_version = vaezoo.PLUGIN_API_VERSION
    sections = {"data": DataConfig, "tokenizer": TokenizerConfig, "model": ModelConfig, "generate": GenerateConfig}
    description = "sentences: LSTM VAE (Bowman et al. 2016) or LSTM LM; word/BPE tokenizers; greedy/sample/beam decoding"
    # `vaezoo plugins check text` reads no corpus (see example_batch): the path is a placeholder.
    example_recipe = {"data": {"path": "."}, "tokenizer": {"min_frequency": 1}}

    def __init__(self, recipe, run_dir: Path | None = None):
        super().__init__(recipe, run_dir)
        # Read on first use: sampling from a finished run needs neither the corpus nor a split.
        self._splits: dict[str, list[str]] | None = None
        self._labels: dict[str, list[str]] | None = None   # label strings per split (data.labels != 'none')
        self._datasets: dict[str, TokenDataset] = {}
        self._tokenizer: PreTrainedTokenizerFast | None = None

    @property
    def label_names(self) -> list[str] | None:
        """With ``data.labels`` other than 'none', the classes: the sorted distinct label strings
        of the training split (batches carry their indices as ``"label"``); None otherwise."""
        if self.recipe.data.labels == "none":
            return None
        from vaezoo_text import data

        self._read_splits()
        assert self._labels is not None   # read_splits gives labels whenever data.labels is not 'none'
        return data.class_names(self._labels)

    @property
    def uses_latent(self) -> bool:
        # The LM baseline's decoder ignores z: no posterior-collapse warning for it.
        return self.recipe.model.use_latent

    # -- tokenizer ----------------------------------------------------------------------------
    def fit(self, run_dir: Path) -> None:
        """Train the tokenizer on the training split and save it as run_dir/tokenizer.json."""
        from vaezoo_text.tokenizer import save_tokenizer, train_tokenizer

        save_tokenizer(train_tokenizer(self.sentences("train"), self.recipe.tokenizer), run_dir)
        self.run_dir = Path(run_dir)
        self._tokenizer = None  # reload from the file, exactly as every later instance will

    @property
    def tokenizer(self) -> PreTrainedTokenizerFast:
        if self._tokenizer is None:
            if self.run_dir is None:
                raise VaezooError("the text modality needs a run directory holding tokenizer.json (written by fit)")
            from vaezoo_text.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.run_dir)
        return self._tokenizer

    def encode_sentences(self, sentences: Sequence[str]) -> list[list[int]]:
        from vaezoo_text.tokenizer import encode

        return encode(self.tokenizer, sentences, self.recipe.tokenizer.max_length)

    def decode_tokens(self, ids: torch.Tensor) -> list[str]:
        """Text of each row of token ids ``[N, L]``."""
        from vaezoo_text.tokenizer import decode

        return [decode(self.tokenizer, row) for row in ids.tolist()]

    # -- data ---------------------------------------------------------------------------------
    def sentences(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self._read_splits()
        assert self._splits is not None
        return self._splits[split]

    def _read_splits(self) -> None:
        if self._splits is None:
            from vaezoo_text import data

            self._splits, self._labels = data.read_splits(self.recipe.data)

    def sentence_labels(self, split: str) -> list[str] | None:
        """The label string of each sentence of ``split``; None with ``data.labels = 'none'``."""
        self.sentences(split)   # checks the split's name and reads the data
        labels = self._labels
        return None if labels is None else labels[split]

    def dataset(self, split: str) -> Dataset:
        if split not in self._datasets:
            from vaezoo_text import data

            labels = self.sentence_labels(split)
            ids = None
            if labels is not None:
                index = {name: i for i, name in enumerate(self.label_names or [])}
                ids = [index[label] for label in labels]
            self._datasets[split] = data.TokenDataset(self.encode_sentences(self.sentences(split)), ids)
        return self._datasets[split]

    def collate(self, examples: Sequence[torch.Tensor | dict] | vaezoo.Batch) -> vaezoo.Batch:
        """Dataset items (token ids, or ``{"x", "label"}`` with labels) padded into a batch."""
        from vaezoo_text import data

        if isinstance(examples, dict):  # a whole batch from a dataset's __getitems__ (TokenDataset has none)
            return super().collate(examples)
        return data.collate_items(examples, self.tokenizer.pad_token_id)

    def example_batch(self, n: int = 4) -> vaezoo.Batch:
        """A tokenizer trained on a few built-in sentences (saved in the run directory, as fit
        would), and ``n`` of them as a padded batch."""
        import torch

        from vaezoo_text.tokenizer import save_tokenizer, train_tokenizer

        if self.run_dir is None:
            raise VaezooError("the text modality's example_batch needs a run directory to save its tokenizer in")
        save_tokenizer(train_tokenizer(EXAMPLE_SENTENCES, self.recipe.tokenizer), self.run_dir)
        self._tokenizer = None
        sentences = [EXAMPLE_SENTENCES[i % len(EXAMPLE_SENTENCES)] for i in range(n)]
        return self.collate([torch.tensor(ids) for ids in self.encode_sentences(sentences)])

    def load_inputs(self, items: Sequence[str]) -> vaezoo.Batch:
        """Sentences given on the command line, tokenized like the training data (no labels)."""
        import torch

        if not items:
            raise InputError("no input sentences given")
        sentences = [" ".join(item.split()) for item in items]
        for i, sentence in enumerate(sentences, 1):
            if not sentence:
                raise InputError(f"input {i} is empty; give each sentence as one quoted argument")
        return self.collate([torch.tensor(ids) for ids in self.encode_sentences(sentences)])

    # -- networks -----------------------------------------------------------------------------
    def build_encoder(self) -> nn.Module:
        from vaezoo_text.networks import Encoder

        return Encoder(len(self.tokenizer), self.recipe.model, self.recipe.latent.dim, self.tokenizer.pad_token_id,
                       self.encoder_condition_dim)

    def build_decoder(self) -> nn.Module:
        from vaezoo_text.networks import Decoder

        tok = self.tokenizer
        return Decoder(
            len(tok), self.recipe.model, self.decoder_input_dim, pad_id=tok.pad_token_id, unk_id=tok.unk_token_id,
            bos_id=tok.bos_token_id, eos_id=tok.eos_token_id, max_length=self.recipe.tokenizer.max_length,
        )

    def export_decoder(self, decoder: nn.Module) -> nn.Module:
        """(API 1.4) Greedy generation as a module ``torch.jit.script`` compiles: the input of the
        decoder -> token ids, what ``vaezoo export`` writes (with tokenizer.json beside it)."""
        from vaezoo_text.networks import Decoder, GreedyGenerator

        assert isinstance(decoder, Decoder)
        return GreedyGenerator(decoder)

    # -- writers ------------------------------------------------------------------------------
    def generate_text(self, px: SentenceDistribution) -> list[str]:
        """Decode every z of ``px`` with the recipe's [generate] options."""
        g: GenerateConfig = self.recipe.generate
        ids = px.generate(g.strategy, temperature=g.temperature, top_p=g.top_p, beam_width=g.beam_width,
                          max_length=g.max_length, allow_unk=g.allow_unk)
        return self.decode_tokens(ids)

    def write_samples(self, px, stem: Path) -> list[Path]:
        from vaezoo_text import writers

        return writers.write_samples(self.generate_text(px), stem)

    def write_reconstructions(self, batch: vaezoo.Batch, px, stem: Path) -> list[Path]:
        # The input as the model saw it (lowercased, rare words as <unk>), then its decoding.
        from vaezoo_text import writers

        return writers.write_reconstructions(self.decode_tokens(batch["x"]), self.generate_text(px), stem)

    def write_interpolations(self, px, steps: int, stem: Path) -> list[Path]:
        from vaezoo_text import writers

        return writers.write_interpolations(self.generate_text(px), steps, stem)

    # -- evaluation ---------------------------------------------------------------------------
    def extra_metrics(self, vae, batches: Iterable[vaezoo.Batch], base: dict) -> dict[str, float]:
        """Per-token perplexity of the evaluated sentences: from the IW-NLL (``perplexity``)
        and from the ELBO (``perplexity_elbo``, an upper bound)."""
        n = base["n_examples"]
        tokens = sum(int(batch["length"].sum()) for batch in batches)   # exactly the evaluated sentences
        out = {"tokens_per_sentence": tokens / n}
        if base.get("iw_nll") is not None:
            out["perplexity"] = perplexity(base["iw_nll"] * n, tokens)
        out["perplexity_elbo"] = perplexity(-base["elbo"] * n, tokens)
        return out
