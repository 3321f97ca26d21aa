"""Sentences: a text file with one per line, or WordNet's example sentences; seeded splits.

A split is a list of strings; the modality tokenizes it once into a ``TokenDataset`` whose
items are LongTensors of token ids ending in EOS, and ``collate`` pads them into a batch:

    {"x": LongTensor [N, T] targets ending in EOS, padded with PAD,
     "mask": bool [N, T] (True on real tokens, EOS included),
     "length": LongTensor [N] (tokens per sentence, EOS included)}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from vaezoo import InputError
from vaezoo import split_indices

from vaezoo_text.config import DataConfig

WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
WORDNET_MIN_CHARS = 15  # shorter quoted parts are mostly phrases ("a telling smile" is 15)
_QUOTED = re.compile(r'"([^"]*)"')


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped, whitespace runs collapsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: text file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; data.path needs a text file with one sentence per line "
                         "(or set data.format = 'wordnet' for a WordNet folder)") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def read_wordnet(folder: Path) -> list[str]:
    """Example sentences of WordNet 3.0 glosses, in file order.

    Lines that start with a space are the licence header. On the others, the gloss follows
    ``|``; its quoted parts of 15 characters or more are the example sentences.
    """
    folder = Path(folder)
    missing = [name for name in WORDNET_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"{folder}: not a WordNet data folder (missing {', '.join(missing)}); "
            "on Debian install wordnet-base and use /usr/share/wordnet"
        )
    sentences = []
    for name in WORDNET_FILES:
        # WordNet is mostly ASCII; a stray Latin-1 byte must not stop the load.
        with (folder / name).open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                _, bar, gloss = line.partition("|")
                if not bar:
                    continue
                for quote in _QUOTED.findall(gloss):
                    quote = " ".join(quote.split())
                    if len(quote) >= WORDNET_MIN_CHARS:
                        sentences.append(quote)
    return sentences


def unique(sentences: Sequence[str]) -> list[str]:
    """Drop repeats, keeping the first occurrence (so the order stays stable)."""
    return list(dict.fromkeys(sentences))


def make_splits(cfg: DataConfig) -> dict[str, list[str]]:
    """The three splits. Without separate files, validation and test are seeded hold-outs of path."""
    corpus = read_wordnet(cfg.path) if cfg.format == "wordnet" else read_lines(cfg.path)
    if cfg.deduplicate:
        corpus = unique(corpus)
    if not corpus:
        raise InputError(f"{cfg.path}: no sentences found")
    splits: dict[str, list[str]] = {}
    rest = list(range(len(corpus)))
    # Each missing split is held out of what is left, as a share of the whole corpus.
    for split, path, fraction, salt in (("test", cfg.test_path, cfg.test_fraction, 1),
                                        ("validation", cfg.validation_path, cfg.validation_fraction, 2)):
        if path is not None:
            splits[split] = read_lines(path)
            continue
        keep, held = split_indices(len(rest), min(1.0, fraction * len(corpus) / len(rest)), cfg.split_seed * 10 + salt)
        splits[split] = [corpus[rest[i]] for i in held]
        rest = [rest[i] for i in keep]
    train = [corpus[i] for i in rest]
    if cfg.max_train_examples and cfg.max_train_examples < len(train):
        _, chosen = split_indices(len(train), cfg.max_train_examples / len(train), cfg.split_seed * 10 + 3)
        train = [train[i] for i in chosen]
    splits["train"] = train
    for split, path in (("train", cfg.path), ("validation", cfg.validation_path), ("test", cfg.test_path)):
        if not splits[split]:
            if path is None or split == "train":
                raise InputError(f"{cfg.path}: {len(corpus)} usable sentences are too few for a {split} split; add sentences")
            raise InputError(f"{path}: no {split} sentences in this file")
    return splits


class TokenDataset(Dataset):
    """Token ids of sentences, each item a LongTensor ending in EOS."""

    def __init__(self, ids: Sequence[Sequence[int]]):
        self.ids = [torch.tensor(row, dtype=torch.long) for row in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.ids[i]


def pad_batch(items: Sequence[torch.Tensor], pad_id: int) -> dict:
    """Pad token-id tensors into a batch (see the module docstring)."""
    if not items:
        raise ValueError("cannot make a batch of no sentences")
    lengths = torch.tensor([len(ids) for ids in items], dtype=torch.long)
    x = torch.full((len(items), int(lengths.max())), pad_id, dtype=torch.long)
    for row, ids in enumerate(items):
        x[row, : len(ids)] = ids
    mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    return {"x": x, "mask": mask, "length": lengths}
