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

    from vaezoo_text.data import SplitPlan
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
        self._plan: SplitPlan | None = None              # which split each corpus sentence is in
        self._store: tuple[Path, dict] | None = None    # the run's token store: folder, manifest
        self._datasets: dict[str, Dataset] = {}
        self._tokenizer: PreTrainedTokenizerFast | None = None

    @property
    def label_names(self) -> list[str] | None:
        """With ``data.labels`` other than 'none', the classes: the sorted distinct label strings
        of the training split (batches carry their indices as ``"label"``); None otherwise."""
        if self.recipe.data.labels == "none":
            return None
        from vaezoo_text.tokenizer import TOKENIZER_FILE

        if self._store is not None or (self.run_dir is not None and (self.run_dir / TOKENIZER_FILE).is_file()):
            return self._token_store()[1]["label_names"]    # a fitted run: its store knows them
        return self._split_plan().label_names

    @property
    def uses_latent(self) -> bool:
        # The LM baseline's decoder ignores z: no posterior-collapse warning for it.
        return self.recipe.model.use_latent

    # -- tokenizer ----------------------------------------------------------------------------
    def fit(self, run_dir: Path) -> None:
        """Train the tokenizer on the training split (streamed) and save it as
        run_dir/tokenizer.json, then tokenize the splits into the run's token store."""
        from vaezoo_text.data import split_examples
        from vaezoo_text.tokenizer import save_tokenizer, train_tokenizer

        train = (sentence for sentence, _ in split_examples(self.recipe.data, self._split_plan(), "train"))
        save_tokenizer(train_tokenizer(train, self.recipe.tokenizer), run_dir)
        self.run_dir = Path(run_dir)
        self._tokenizer = None  # reload from the file, exactly as every later instance will
        self._store, self._datasets = None, {}
        self._token_store()

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
    def _split_plan(self) -> SplitPlan:
        if self._plan is None:
            from vaezoo_text.data import plan_splits

            self._plan = plan_splits(self.recipe.data)
        return self._plan

    def _token_store(self) -> tuple[Path, dict]:
        """The run's tokenized splits (``vaezoo_text.store``): folder and manifest, built on
        first use (in a temporary folder when the run directory cannot be written)."""
        if self._store is None:
            from vaezoo_text.store import STORE_FOLDER, build_store, fingerprint
            from vaezoo_text.tokenizer import TOKENIZER_FILE

            tokenizer = self.tokenizer   # needs run_dir
            assert self.run_dir is not None
            print_ = fingerprint(self.recipe.data, self.recipe.tokenizer.max_length, self.run_dir / TOKENIZER_FILE)
            self._store = build_store(self.run_dir / STORE_FOLDER, self.recipe.data, self._split_plan,
                                      self.encode_sentences, len(tokenizer), print_)
        return self._store

    def sentences(self, split: str) -> list[str]:
        """The sentences of ``split`` as a list (for small corpora and analyses: training reads
        the token store instead)."""
        return [sentence for sentence, _ in self._examples(split)]

    def sentence_labels(self, split: str) -> list[str] | None:
        """The label string of each sentence of ``split``; None with ``data.labels = 'none'``."""
        examples = self._examples(split)
        return None if self.recipe.data.labels == "none" else [str(label) for _, label in examples]

    def _examples(self, split: str) -> list[tuple[str, str | None]]:
        from vaezoo_text.data import split_examples

        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return list(split_examples(self.recipe.data, self._split_plan(), split))

    def dataset(self, split: str) -> Dataset:
        """A split of the run's token store, read by memory map."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if split not in self._datasets:
            from vaezoo_text.store import TokenStore

            folder, manifest = self._token_store()
            self._datasets[split] = TokenStore(folder, split, manifest)
        return self._datasets[split]

    def collate(self, examples: Sequence[torch.Tensor | dict] | vaezoo.Batch) -> vaezoo.Batch:
        """Dataset items (token ids, or ``{"x", "label"}`` with labels) padded into a batch."""
        from vaezoo_text import data

        if isinstance(examples, dict):  # a whole batch from a dataset's __getitems__ (TokenStore has none)
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
