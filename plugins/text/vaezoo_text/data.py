"""Sentences: a text file with one per line, or WordNet's example sentences; seeded splits.

The corpus is streamed, never held: ``plan_splits`` reads it once and keeps one byte per
sentence (its split) and, with labels, four (its label), and ``split_examples`` streams a
split's sentences in corpus order. The modality tokenizes each split once into a token
store on disk (``vaezoo_text.store``) that training reads by memory map. The items are
LongTensors of token ids ending in EOS, and ``collate`` pads them into a batch:

    {"x": LongTensor [N, T] targets ending in EOS, padded with PAD,
     "mask": bool [N, T] (True on real tokens, EOS included),
     "length": LongTensor [N] (tokens per sentence, EOS included)}

With ``data.labels`` other than 'none' the items are ``{"x": ids, "label": class id}`` and the
batch also holds ``"label"``: LongTensor [N], indices into the sorted distinct label strings of
the training split (``TextModality.label_names``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from vaezoo import InputError

from vaezoo_text.config import DataConfig

WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
WORDNET_MIN_CHARS = 15  # shorter quoted parts are mostly phrases ("a telling smile" is 15)
_QUOTED = re.compile(r'"([^"]*)"')

Example = tuple[str, "str | None"]   # a sentence and its label (None without labels)


def _numbered_lines(path: Path, hint: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file, streamed, split exactly as ``str.splitlines``
    splits the whole text (so line numbers in messages are the editor's)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: text file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; {hint}") from None
    number, offset = 0, 0
    with f:
        for raw in f:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {offset + err.start})") from None
            offset += len(raw)
            for line in text.splitlines():
                number += 1
                yield number, line


_SENTENCES_HINT = ("data.path needs a text file with one sentence per line "
                   "(or set data.format = 'wordnet' for a WordNet folder)")


def iter_lines(path: Path, hint: str = _SENTENCES_HINT) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file, stripped, whitespace runs collapsed, streamed."""
    for _, line in _numbered_lines(path, hint):
        if line.strip():
            yield " ".join(line.split())


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped, whitespace runs collapsed."""
    return list(iter_lines(path))


def iter_tab_lines(path: Path) -> Iterator[Example]:
    """(sentence, label) of a file whose non-empty lines are ``LABEL<TAB>sentence`` (the label
    is the text before the first tab); a line without a tab, label or sentence is refused."""
    hint = "with data.labels = 'tab' it needs a text file of LABEL<TAB>sentence lines"
    for number, line in _numbered_lines(path, hint):
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
        yield sentence, label


def read_tab_lines(path: Path) -> tuple[list[str], list[str]]:
    """Sentences and labels of a ``LABEL<TAB>sentence`` file (see ``iter_tab_lines``)."""
    pairs = list(iter_tab_lines(path))
    return [sentence for sentence, _ in pairs], [str(label) for _, label in pairs]


def iter_labelled_lines(sentences_path: Path, labels_path: Path) -> Iterator[Example]:
    """The sentences (non-empty lines) of ``sentences_path`` with one label per non-empty line
    of ``labels_path``; two files of different lengths are refused (at their end)."""
    labels = (line.strip() for _, line in _numbered_lines(
        labels_path, "data.labels = 'file' needs a text file with one label per line") if line.strip())
    count = 0
    for sentence in iter_lines(sentences_path):
        label = next(labels, None)
        if label is None:
            sentences = sum(1 for _ in iter_lines(sentences_path))
            raise InputError(f"{labels_path}: {count} labels, but {sentences_path} has {sentences} sentences; "
                             "give one label per sentence line (blank lines are skipped in both)")
        count += 1
        yield sentence, label
    extra = sum(1 for _ in labels)
    if extra:
        raise InputError(f"{labels_path}: {count + extra} labels, but {sentences_path} has {count} sentences; "
                         "give one label per sentence line (blank lines are skipped in both)")


def iter_wordnet_sources(folder: Path) -> Iterator[Example]:
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
                        yield quote, pos


def read_wordnet_sources(folder: Path) -> list[tuple[str, str]]:
    """Example sentences of WordNet 3.0 glosses with their part of speech (see ``iter_wordnet_sources``)."""
    return cast(list[tuple[str, str]], list(iter_wordnet_sources(folder)))


def read_wordnet(folder: Path) -> list[str]:
    """Example sentences of WordNet 3.0 glosses, in file order (see ``iter_wordnet_sources``)."""
    return [sentence for sentence, _ in iter_wordnet_sources(folder)]


def unique(sentences: Sequence[str]) -> list[str]:
    """Drop repeats, keeping the first occurrence (so the order stays stable)."""
    return list(dict.fromkeys(sentences))


def iter_split_file(cfg: DataConfig, path: Path, labels_path: Path | None) -> Iterator[Example]:
    """(sentence, label) of a file, the label None unless the recipe asks for 'tab' or 'file' labels."""
    if cfg.labels == "tab":
        return iter_tab_lines(path)
    if cfg.labels == "file":
        assert labels_path is not None   # DataConfig.check requires one with labels = 'file'
        return iter_labelled_lines(path, labels_path)
    return ((sentence, None) for sentence in iter_lines(path))


def iter_corpus(cfg: DataConfig) -> Iterator[Example]:
    """(sentence, label) of ``cfg.path`` in file order, before deduplication and splitting."""
    if cfg.format == "hf":
        from vaezoo_text.hf_source import iter_examples, split_sources

        return iter_examples(split_sources(cfg.path)["train"], cfg)
    if cfg.format == "wordnet":
        labelled = cfg.labels == "source"
        return ((sentence, pos if labelled else None) for sentence, pos in iter_wordnet_sources(cfg.path))
    return iter_split_file(cfg, cfg.path, cfg.labels_path)


@dataclass
class OwnSource:
    """A validation or test split read from its own source rather than held out of the corpus:
    a file (``validation_path``, ``test_path``) or a Hugging Face DatasetDict's split."""

    where: str                # names the source in messages
    labels_where: str         # names where its labels come from
    examples: Callable[[], Iterator[Example]]


def own_source(cfg: DataConfig, split: str) -> OwnSource | None:
    """The split's own source, or None when it is held out of the corpus (always for train)."""
    if split == "train":
        return None
    if cfg.format == "hf":
        from vaezoo_text.hf_source import iter_examples, split_sources

        files = split_sources(cfg.path).get(split)
        where = f"{cfg.path} (its {split} split)"
        return None if files is None else OwnSource(where, where, lambda: iter_examples(files, cfg))
    path, labels_path = ((cfg.validation_path, cfg.validation_labels_path) if split == "validation"
                         else (cfg.test_path, cfg.test_labels_path))
    if path is None:
        return None
    return OwnSource(str(path), str(labels_path or path), lambda: iter_split_file(cfg, path, labels_path))


def _show_classes(classes: Sequence[str], most: int = 20) -> str:
    shown = ", ".join(repr(c) for c in classes[:most])
    return shown + (f", ... ({len(classes)} classes)" if len(classes) > most else "")


# Split codes of corpus sentences (SplitPlan.codes).
TRAIN, VALIDATION, TEST, UNUSED = 0, 1, 2, 255
_CODES = {"train": TRAIN, "validation": VALIDATION, "test": TEST}


def _held_out(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which of ``n`` items ``split_indices(n, fraction, seed)`` holds out, as a bool mask: the
    same seeded permutation, drawn as int32 (torch draws the same order for any dtype)."""
    held = max(1, round(fraction * n)) if fraction > 0 and n > 1 else 0
    mask = np.zeros(n, dtype=bool)
    if held:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed), dtype=torch.int32)
        mask[perm[:held].numpy()] = True
    return mask


class _RepeatFinder:
    """Finds repeated sentences by their 64-bit hashes, spilled to a temporary file as they
    come and then sorted a sixteenth of the hash range at a time, so memory holds a fraction
    of the corpus' hashes (the corpus itself is never held)."""

    PARTITIONS = 16
    CHUNK = 1 << 20   # hashes read back at a time

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.count = 0

    def add(self, hashes: list[int]) -> None:
        self.file.write(np.array(hashes, dtype=np.uint64).tobytes())
        self.count += len(hashes)

    def first_occurrences(self) -> np.ndarray:
        """Bool mask over everything added: True at the first occurrence of each hash."""
        first = np.ones(self.count, dtype=bool)
        for part in range(self.PARTITIONS):
            hashes, where = [], []
            for start, chunk in self._chunks():
                chosen = np.flatnonzero((chunk >> np.uint64(60)) == part)
                hashes.append(chunk[chosen])
                where.append(chosen + start)
            part_hashes, part_where = np.concatenate(hashes), np.concatenate(where)
            order = np.argsort(part_hashes, kind="stable")   # stable: equal hashes stay in corpus order
            ordered = part_hashes[order]
            repeat = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
            first[part_where[order[repeat]]] = False
        self.file.close()
        return first

    def _chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        self.file.seek(0)
        start = 0
        while data := self.file.read(self.CHUNK * 8):
            chunk = np.frombuffer(data, dtype=np.uint64)
            yield start, chunk
            start += len(chunk)


def _sentence_hash(sentence: str) -> int:
    return int.from_bytes(hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class SplitPlan:
    """Which split each sentence of the corpus falls in, from one streaming pass.

    ``codes[i]`` is the split of the corpus' i-th sentence (``TRAIN``, ``VALIDATION``, ``TEST``,
    or ``UNUSED``: a repeat, or outside ``max_train_examples``); ``label_ids[i]`` its label as an
    index into ``labels_seen`` (None without labels); ``label_names``: the classes, the sorted
    distinct labels of the training split. A split read from its own file has no codes.
    """

    codes: np.ndarray
    label_ids: np.ndarray | None
    labels_seen: list[str]
    label_names: list[str] | None
    sizes: dict[str, int]


def plan_splits(cfg: DataConfig) -> SplitPlan:
    """The three splits of ``cfg``: without separate files, validation and test are seeded
    hold-outs of path (the same ones ``split_indices`` drew from the list of sentences).
    Repeated sentences keep the label of their first occurrence (found by a 64-bit hash of the
    text). A validation or test label the training split lacks is refused."""
    repeats = _RepeatFinder() if cfg.deduplicate else None
    label_ids: list[np.ndarray] = []
    labels_seen: dict[str, int] = {}   # label -> id, in order of first appearance
    chunk_hashes: list[int] = []
    chunk_labels: list[int] = []
    count = 0
    for sentence, label in iter_corpus(cfg):
        count += 1
        if repeats is not None:
            chunk_hashes.append(_sentence_hash(sentence))
        if label is not None:
            chunk_labels.append(labels_seen.setdefault(label, len(labels_seen)))
        if len(chunk_hashes) >= 65536 or len(chunk_labels) >= 65536:   # numpy chunks: 4 bytes a label, not 36
            if repeats is not None:
                repeats.add(chunk_hashes)
            label_ids.append(np.array(chunk_labels, dtype=np.int32))
            chunk_hashes, chunk_labels = [], []
    if repeats is not None:
        repeats.add(chunk_hashes)
    label_ids.append(np.array(chunk_labels, dtype=np.int32))
    if not count:
        raise InputError(f"{cfg.path}: no sentences found")
    kept = repeats.first_occurrences() if repeats is not None else np.ones(count, dtype=bool)
    labels = np.concatenate(label_ids) if labels_seen else None
    n = int(kept.sum())

    # Splits of the distinct sentences, in the order read_splits always drew them.
    split = np.full(n, TRAIN, dtype=np.uint8)
    own = {name: own_source(cfg, name) for name in _CODES}
    for name, fraction, salt in (("test", cfg.test_fraction, 1), ("validation", cfg.validation_fraction, 2)):
        if own[name] is not None:
            continue
        rest = split == TRAIN
        left = int(rest.sum())
        part = split[rest]
        part[_held_out(left, min(1.0, fraction * n / left), cfg.split_seed * 10 + salt)] = _CODES[name]
        split[rest] = part
    left = int((split == TRAIN).sum())
    if cfg.max_train_examples and cfg.max_train_examples < left:
        rest = split == TRAIN
        part = split[rest]
        part[~_held_out(left, cfg.max_train_examples / left, cfg.split_seed * 10 + 3)] = UNUSED
        split[rest] = part
    codes = np.full(count, UNUSED, dtype=np.uint8)
    codes[kept] = split
    del split, kept

    sizes = {name: int((codes == code).sum()) for name, code in _CODES.items()}
    seen = list(labels_seen)
    label_names = None if labels is None else sorted(seen[i] for i in np.unique(labels[codes == TRAIN]))
    for name in _CODES:
        source = own[name]
        if source is not None:
            sizes[name] = _check_own_split(name, source, label_names)
        elif label_names is not None and labels is not None and name != "train":
            unknown_ids = np.ones(len(labels_seen), dtype=np.bool_)
            unknown_ids[[labels_seen[label] for label in label_names]] = False
            unknown = np.flatnonzero((codes == _CODES[name]) & unknown_ids[labels])
            if len(unknown):
                where = cfg.labels_path or cfg.path
                label = seen[labels[unknown[0]]]
                raise InputError(f"{where}: the {name} label {label!r} is not among the training split's classes "
                                 f"({_show_classes(label_names)})")
        if not sizes[name]:
            if source is None:
                raise InputError(f"{cfg.path}: {n} usable sentences are too few for a {name} split; add sentences")
            raise InputError(f"{source.where}: no {name} sentences in this file")
    return SplitPlan(codes, labels, seen, label_names, sizes)


def _check_own_split(split: str, source: OwnSource, label_names: list[str] | None) -> int:
    """Sentences of a split's own source, read through once: its labels must be the training split's."""
    known = set(label_names or [])
    count = 0
    for _, label in source.examples():
        if label_names is not None and label not in known:
            raise InputError(f"{source.labels_where}: the {split} label {label!r} is not among the training "
                             f"split's classes ({_show_classes(label_names)})")
        count += 1
    return count


def split_examples(cfg: DataConfig, plan: SplitPlan, split: str) -> Iterator[Example]:
    """(sentence, label) of one split in corpus order, streamed."""
    source = own_source(cfg, split)
    if source is not None:
        yield from source.examples()
        return
    code = _CODES[split]
    for i, example in enumerate(iter_corpus(cfg)):
        if plan.codes[i] == code:
            yield example


def read_splits(cfg: DataConfig) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    """The three splits' sentences and, with ``cfg.labels`` other than 'none', their label
    strings (split -> one per sentence; None without labels), as lists: for small corpora and
    tests (training streams them; see ``plan_splits`` and ``split_examples``)."""
    plan = plan_splits(cfg)
    splits: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    for split in _CODES:
        examples = list(split_examples(cfg, plan, split))
        splits[split] = [sentence for sentence, _ in examples]
        labels[split] = [cast(str, label) for _, label in examples]
    return splits, (labels if plan.label_names is not None else None)


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
