"""A run's tokenized splits on disk, read by memory map: memory that does not grow with the corpus.

``build_store`` streams each split's sentences once, tokenizes them in batches (the
`tokenizers` library encodes a batch on all cores) and appends the ids to flat files in
``RUN_DIR/text-data/``:

    SPLIT.tokens    every sentence's token ids (EOS last) end to end: uint16, or uint32 for
                    vocabularies over 65,536
    SPLIT.offsets   int64 [N + 1]: sentence i is tokens[offsets[i]:offsets[i + 1]]
    SPLIT.labels    int32 [N], class ids (only with data.labels)
    manifest.json   format, dtype, counts, class names and the fingerprint of what the files
                    were made from (the [data] section, max_length, tokenizer.json's hash, the
                    sources' sizes and modification times); written last

``vaezoo.cached_folder`` builds it: once, under a lock (concurrent ranks wait), staged and
renamed into place (a crash leaves no half store), again when the fingerprint changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

import vaezoo
from vaezoo import InputError

from vaezoo_text.config import DataConfig
from vaezoo_text.data import SplitPlan, split_examples

STORE_FOLDER = "text-data"
STORE_FORMAT = 1
ENCODE_BATCH = 8192   # sentences per tokenizer call: large enough for its threads, small in memory


def fingerprint(cfg: DataConfig, max_length: int, tokenizer_file: Path) -> dict:
    """What a store's contents depend on; a store whose fingerprint differs is rebuilt."""
    sources = (cfg.path, cfg.labels_path, cfg.validation_path, cfg.validation_labels_path, cfg.test_path,
               cfg.test_labels_path)
    return {"store_format": STORE_FORMAT, "data": json.loads(json.dumps(asdict(cfg), default=str)),
            "max_length": max_length, "tokenizer_sha256": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest(),
            "files": vaezoo.file_fingerprint(sources)}


class _SplitWriter:
    """Appends tokenized sentences of one split to its files."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, labelled: bool):
        self.tokens = open(folder / f"{split}.tokens", "wb")
        self.offsets = open(folder / f"{split}.offsets", "wb")
        self.labels = open(folder / f"{split}.labels", "wb") if labelled else None
        self.dtype, self.count, self.end = dtype, 0, 0
        self.offsets.write(np.zeros(1, dtype=np.int64).tobytes())

    def write(self, rows: Sequence[Sequence[int]], labels: Sequence[int] | None) -> None:
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((i for row in rows for i in row), dtype=self.dtype, count=int(lengths.sum()))
        self.tokens.write(flat.tobytes())
        self.offsets.write((self.end + np.cumsum(lengths)).tobytes())
        if self.labels is not None:
            assert labels is not None
            self.labels.write(np.asarray(labels, dtype=np.int32).tobytes())
        self.count += len(rows)
        self.end += int(lengths.sum())

    def close(self) -> None:
        for handle in (self.tokens, self.offsets, self.labels):
            if handle is not None:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()


def build_store(folder: Path, cfg: DataConfig, plan: Callable[[], SplitPlan],
                encode: Callable[[list[str]], list[list[int]]], vocab_size: int, print_: dict) -> tuple[Path, dict]:
    """The store with the fingerprint ``print_`` at ``folder`` (see the module docstring), built
    if needed: ``(folder, manifest)``, the folder a temporary one when ``folder`` cannot be
    written. ``plan`` is called only when the store must be built."""
    return vaezoo.cached_folder(folder, print_, lambda staging: _write_splits(staging, cfg, plan(), encode, vocab_size))


def _write_splits(folder: Path, cfg: DataConfig, plan: SplitPlan, encode: Callable[[list[str]], list[list[int]]],
                  vocab_size: int) -> dict:
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    classes = {name: i for i, name in enumerate(plan.label_names or [])}
    counts = {}
    for split in vaezoo.SPLITS:
        writer = _SplitWriter(folder, split, dtype, plan.label_names is not None)
        sentences: list[str] = []
        labels: list[int] = []

        def flush() -> None:
            writer.write(encode(sentences), labels if classes else None)
            sentences.clear()
            labels.clear()

        examples = split_examples(cfg, plan, split)
        for sentence, label in vaezoo.progress(examples, desc=f"tokenizing {split}", total=plan.sizes[split],
                                               unit="sentence"):
            sentences.append(sentence)
            if classes:
                labels.append(classes[str(label)])
            if len(sentences) == ENCODE_BATCH:
                flush()
        if sentences:
            flush()
        writer.close()
        counts[split] = writer.count
    return {"dtype": dtype.name, "counts": counts, "label_names": plan.label_names}


class TokenStore(Dataset):
    """One split of a store: items as ``TokenDataset`` gives them (a LongTensor of ids, or
    ``{"x", "label"}``), read from memory-mapped files. The maps open on first use in each
    process (a DataLoader worker opens its own; nothing large is pickled to it)."""

    def __init__(self, folder: Path, split: str, manifest: dict):
        self.folder, self.split = Path(folder), split
        self.dtype, self.count = np.dtype(manifest["dtype"]), int(manifest["counts"][split])
        self.labelled = manifest.get("label_names") is not None
        self._maps: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def _open(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self._maps is None:
            def array(suffix: str, dtype: np.dtype, count: int) -> np.ndarray:
                path = self.folder / f"{self.split}.{suffix}"
                if path.stat().st_size != count * dtype.itemsize:
                    raise InputError(f"{path}: {path.stat().st_size} bytes, expected {count * dtype.itemsize}; "
                                     f"delete {self.folder} to rebuild it")
                if count == 0:
                    return np.zeros(0, dtype=dtype)
                return np.memmap(path, dtype=dtype, mode="r", shape=(count,))

            offsets = array("offsets", np.dtype(np.int64), self.count + 1)
            tokens = array("tokens", self.dtype, int(offsets[-1]))
            labels = array("labels", np.dtype(np.int32), self.count) if self.labelled else None
            self._maps = (tokens, offsets, labels)
        return self._maps

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor | dict:
        if not -self.count <= i < self.count:
            raise IndexError(f"sentence {i} of a split of {self.count}")
        i %= self.count
        tokens, offsets, labels = self._open()
        ids = torch.from_numpy(tokens[offsets[i]:offsets[i + 1]].astype(np.int64))
        if labels is None:
            return ids
        return {"x": ids, "label": torch.tensor(int(labels[i]), dtype=torch.long)}
