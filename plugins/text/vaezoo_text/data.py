"""Sentences: a text file with one per line, or WordNet's example sentences; seeded splits.

A split is a list of strings; the modality tokenizes it once into a ``TokenDataset`` whose
items are LongTensors of token ids ending in EOS, and ``collate`` pads them into a batch:

    {"x": LongTensor [N, T] targets ending in EOS, padded with PAD,
     "mask": bool [N, T] (True on real tokens, EOS included),
     "length": LongTensor [N] (tokens per sentence, EOS included)}

With ``data.labels`` other than 'none' the items are ``{"x": ids, "label": class id}`` and the
batch also holds ``"label"``: LongTensor [N], indices into the sorted distinct label strings of
the training split (``TextModality.label_names``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence, cast

import torch
from torch.utils.data import Dataset

from vaezoo import InputError
from vaezoo import split_indices

from vaezoo_text.config import DataConfig

WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
WORDNET_MIN_CHARS = 15  # shorter quoted parts are mostly phrases ("a telling smile" is 15)
_QUOTED = re.compile(r'"([^"]*)"')


def _read_text(path: Path, hint: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: text file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; {hint}") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


_SENTENCES_HINT = ("data.path needs a text file with one sentence per line "
                   "(or set data.format = 'wordnet' for a WordNet folder)")


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped, whitespace runs collapsed."""
    text = _read_text(path, _SENTENCES_HINT)
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def read_tab_lines(path: Path) -> tuple[list[str], list[str]]:
    """Sentences and labels of a file whose non-empty lines are ``LABEL<TAB>sentence`` (the
    label is the text before the first tab); a line without a tab, label or sentence is refused."""
    text = _read_text(path, "with data.labels = 'tab' it needs a text file of LABEL<TAB>sentence lines")
    sentences, labels = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, tab, sentence = line.partition("\t")
        label, sentence = label.strip(), " ".join(sentence.split())
        if not tab:
            raise InputError(f"{path}, line {number}: no tab; with data.labels = 'tab' every line is LABEL<TAB>sentence")
        if not label:
            raise InputError(f"{path}, line {number}: no label before the tab")
        if not sentence:
            raise InputError(f"{path}, line {number}: no sentence after the tab")
        sentences.append(sentence)
        labels.append(label)
    return sentences, labels


def read_label_file(labels_path: Path, sentences_path: Path, count: int) -> list[str]:
    """One label per non-empty line of ``labels_path``, aligned with the ``count`` sentences
    (non-empty lines) of ``sentences_path``."""
    text = _read_text(labels_path, "data.labels = 'file' needs a text file with one label per line")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != count:
        raise InputError(f"{labels_path}: {len(labels)} labels, but {sentences_path} has {count} sentences; "
                         "give one label per sentence line (blank lines are skipped in both)")
    return labels


def read_wordnet_sources(folder: Path) -> list[tuple[str, str]]:
    """Example sentences of WordNet 3.0 glosses, in file order, each with its part of speech:
    the data file it comes from (``noun``, ``verb``, ``adj``, ``adv``).

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
    examples = []
    for name in WORDNET_FILES:
        pos = name.partition(".")[2]
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
                        examples.append((quote, pos))
    return examples


def read_wordnet(folder: Path) -> list[str]:
    """Example sentences of WordNet 3.0 glosses, in file order (see ``read_wordnet_sources``)."""
    return [sentence for sentence, _ in read_wordnet_sources(folder)]


def unique(sentences: Sequence[str]) -> list[str]:
    """Drop repeats, keeping the first occurrence (so the order stays stable)."""
    return list(dict.fromkeys(sentences))


def _read_split_file(cfg: DataConfig, path: Path, labels_path: Path | None) -> tuple[list[str], list[str] | None]:
    """Sentences of a file, and their labels when the recipe asks for 'tab' or 'file' labels."""
    if cfg.labels == "tab":
        return read_tab_lines(path)
    sentences = read_lines(path)
    if cfg.labels == "file":
        assert labels_path is not None   # DataConfig.check requires one with labels = 'file'
        return sentences, read_label_file(labels_path, path, len(sentences))
    return sentences, None


def _read_corpus(cfg: DataConfig) -> tuple[list[str], list[str] | None]:
    if cfg.format == "wordnet":
        examples = read_wordnet_sources(cfg.path)
        sentences = [sentence for sentence, _ in examples]
        return sentences, ([pos for _, pos in examples] if cfg.labels == "source" else None)
    return _read_split_file(cfg, cfg.path, cfg.labels_path)


def _show_classes(classes: Sequence[str], most: int = 20) -> str:
    shown = ", ".join(repr(c) for c in classes[:most])
    return shown + (f", ... ({len(classes)} classes)" if len(classes) > most else "")


def read_splits(cfg: DataConfig) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    """The three splits' sentences and, with ``cfg.labels`` other than 'none', their label
    strings (split -> one per sentence; None without labels). Without separate files,
    validation and test are seeded hold-outs of path. Repeated sentences keep the label of
    their first occurrence. A validation or test label the training split lacks is refused."""
    corpus, corpus_labels = _read_corpus(cfg)
    if cfg.deduplicate:
        first: dict[str, int] = {}
        for i, sentence in enumerate(corpus):
            first.setdefault(sentence, i)       # the first occurrence stays, in corpus order
        kept = list(first.values())
        corpus = [corpus[i] for i in kept]
        if corpus_labels is not None:
            corpus_labels = [corpus_labels[i] for i in kept]
    if not corpus:
        raise InputError(f"{cfg.path}: no sentences found")
    splits: dict[str, list[str]] = {}
    labels: dict[str, list[str]] | None = None if corpus_labels is None else {}
    rest = list(range(len(corpus)))
    # Each missing split is held out of what is left, as a share of the whole corpus.
    for split, path, labels_path, fraction, salt in (
            ("test", cfg.test_path, cfg.test_labels_path, cfg.test_fraction, 1),
            ("validation", cfg.validation_path, cfg.validation_labels_path, cfg.validation_fraction, 2)):
        if path is not None:
            splits[split], split_labels = _read_split_file(cfg, path, labels_path)
            if labels is not None:
                assert split_labels is not None   # a labelled corpus has labelled split files (DataConfig.check)
                labels[split] = split_labels
            continue
        keep, held = split_indices(len(rest), min(1.0, fraction * len(corpus) / len(rest)), cfg.split_seed * 10 + salt)
        splits[split] = [corpus[rest[i]] for i in held]
        if labels is not None and corpus_labels is not None:
            labels[split] = [corpus_labels[rest[i]] for i in held]
        rest = [rest[i] for i in keep]
    if cfg.max_train_examples and cfg.max_train_examples < len(rest):
        _, chosen = split_indices(len(rest), cfg.max_train_examples / len(rest), cfg.split_seed * 10 + 3)
        rest = [rest[i] for i in chosen]
    splits["train"] = [corpus[i] for i in rest]
    if labels is not None and corpus_labels is not None:
        labels["train"] = [corpus_labels[i] for i in rest]
    for split, path in (("train", cfg.path), ("validation", cfg.validation_path), ("test", cfg.test_path)):
        if not splits[split]:
            if path is None or split == "train":
                raise InputError(f"{cfg.path}: {len(corpus)} usable sentences are too few for a {split} split; add sentences")
            raise InputError(f"{path}: no {split} sentences in this file")
    if labels is not None:
        known = set(labels["train"])
        for split, path, labels_path in (("validation", cfg.validation_path, cfg.validation_labels_path),
                                         ("test", cfg.test_path, cfg.test_labels_path)):
            unknown = next((label for label in labels[split] if label not in known), None)
            if unknown is not None:
                where = labels_path or path or cfg.labels_path or cfg.path
                raise InputError(f"{where}: the {split} label {unknown!r} is not among the training split's classes "
                                 f"({_show_classes(sorted(known))})")
    return splits, labels


def make_splits(cfg: DataConfig) -> dict[str, list[str]]:
    """The three splits' sentences (see ``read_splits``)."""
    return read_splits(cfg)[0]


def class_names(labels: dict[str, list[str]]) -> list[str]:
    """The classes: the sorted distinct label strings of the training split."""
    return sorted(set(labels["train"]))


class TokenDataset(Dataset):
    """Token ids of sentences, each item a LongTensor ending in EOS; with ``labels`` (one
    class id per sentence) each item is ``{"x": ids, "label": long scalar}``."""

    def __init__(self, ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
        self.ids = [torch.tensor(row, dtype=torch.long) for row in ids]
        self.labels = None if labels is None else torch.tensor(list(labels), dtype=torch.long)
        if self.labels is not None and len(self.labels) != len(self.ids):
            raise ValueError(f"{len(self.labels)} labels for {len(self.ids)} sentences")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor | dict:
        if self.labels is None:
            return self.ids[i]
        return {"x": self.ids[i], "label": self.labels[i]}


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


def collate_items(items: Sequence[torch.Tensor | dict], pad_id: int) -> dict:
    """A batch of ``TokenDataset`` items: bare token ids, or ``{"x", "label"}`` dicts, whose
    labels become the batch's ``"label"`` (LongTensor [N])."""
    if items and isinstance(items[0], dict):
        labelled = cast(Sequence[dict], items)
        batch = pad_batch([item["x"] for item in labelled], pad_id)
        batch["label"] = torch.stack([torch.as_tensor(item["label"], dtype=torch.long) for item in labelled])
        return batch
    return pad_batch(cast(Sequence[torch.Tensor], items), pad_id)
