"""Sentences of a Hugging Face `datasets` data set already on disk (``data.format = "hf"``),
through the core's reader (``vaezoo.hf_splits``, ``vaezoo.hf_batches``: a saved Dataset or
DatasetDict folder, or Parquet files, streamed a record batch at a time with pyarrow).

``data.text_column`` holds the sentences; with ``data.labels = "column"``,
``data.label_column`` their classes: a ``ClassLabel`` column gives its names, any other
column its values as text. Empty and missing sentences are skipped, as blank lines are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from vaezoo import InputError, hf_batches, hf_splits

from vaezoo_text.config import DataConfig

split_sources = hf_splits   # the name data.py reads it by


def iter_examples(files: list[Path], cfg: DataConfig) -> Iterator[tuple[str, str | None]]:
    """(sentence, label) of the rows of ``files`` in order; label None unless labels = "column"."""
    labelled = cfg.labels == "column"
    columns = [cfg.text_column] + ([cfg.label_column] if labelled else [])
    for batch in hf_batches(files, columns, hint="set data.text_column / data.label_column"):
        names = batch.class_names(cfg.label_column) if labelled else None
        labels = batch.columns[cfg.label_column] if labelled else [None] * len(batch)
        for row, (text, label) in enumerate(zip(batch.columns[cfg.text_column], labels), batch.first_row):
            if text is not None and not isinstance(text, str):
                raise InputError(f"{batch.file}, row {row}: column {cfg.text_column!r} holds {type(text).__name__}, "
                                 "not text; set data.text_column to the column of sentences")
            sentence = " ".join(text.split()) if text else ""
            if not sentence:
                continue
            if labelled and label is None:
                raise InputError(f"{batch.file}, row {row}: no label in column {cfg.label_column!r}")
            if names and isinstance(label, int) and 0 <= label < len(names):
                label = names[label]
            yield sentence, None if label is None else str(label)
