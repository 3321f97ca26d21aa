"""Tokenizers trained with the `tokenizers` library and used through transformers.

A run's tokenizer is trained once on its training split (``train_tokenizer``), saved in the
run directory as ``tokenizer.json`` (with ``tokenizer_config.json`` naming the special
tokens) and always used through ``PreTrainedTokenizerFast``, loaded from that folder
offline. So ``PreTrainedTokenizerFast.from_pretrained(RUN_DIR)`` gives anyone the exact
tokenization a run was trained and evaluated with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from vaezoo import InputError

from vaezoo_text.config import TokenizerConfig

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # trained first, so their ids are 0, 1, 2, 3
TOKENIZER_FILE = "tokenizer.json"


def train_tokenizer(sentences: Iterable[str], cfg: TokenizerConfig) -> PreTrainedTokenizerFast:
    """A word-level or byte-level BPE tokenizer learned from ``sentences``."""
    norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if cfg.lowercase else [])
    trainer: trainers.Trainer
    if cfg.kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation
        trainer = trainers.WordLevelTrainer(
            vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=SPECIAL_TOKENS
        )
        # Word pieces are joined with spaces; transformers' clean-up then glues "man ' s" back to "man's".
        cleanup = True
    else:
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        cleanup = False  # byte-level decoding is already exact
    tok.normalizer = normalizers.Sequence(norm)
    tok.train_from_iterator(sentences, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
        clean_up_tokenization_spaces=cleanup, model_max_length=cfg.max_length,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: Path) -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder``."""
    tokenizer.save_pretrained(str(folder))
    return Path(folder) / TOKENIZER_FILE


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved by ``save_tokenizer``, read from disk only (no hub look-up)."""
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise InputError(f"{path}: tokenizer missing; it is written when training starts (Modality.fit)")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise InputError(f"{path}: special tokens {SPECIAL_TOKENS} must have ids 0-3, found {ids}")
    return tokenizer


def encode(tokenizer: PreTrainedTokenizerFast, sentences: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each sentence, truncated to ``max_length - 1`` tokens, then EOS appended.

    The batch goes straight to the `tokenizers` backend (its ``encode_batch`` runs on every
    core), then each row is cut: the ids transformers' ``tokenizer(..., truncation=True)``
    gives, at twice its speed (it converts every encoding to Python dictionaries)."""
    if not sentences:
        return []
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None or backend.padding is not None:
        backend.no_truncation()   # left by a transformers call: cut and pad nothing here
        backend.no_padding()
    eos, keep = tokenizer.eos_token_id, max_length - 1
    return [encoding.ids[:keep] + [eos] for encoding in backend.encode_batch(list(sentences), add_special_tokens=False)]


def decode(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Text of one decoded row: cut at the first EOS; <unk> stays visible, PAD and BOS go."""
    ids = [int(i) for i in ids]
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    ids = [i for i in ids if i not in (tokenizer.pad_token_id, tokenizer.bos_token_id)]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert isinstance(text, str)  # one row of ids decodes to one string (a list of rows to a list)
    return text.strip()
