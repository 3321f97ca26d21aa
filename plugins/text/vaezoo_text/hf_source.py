"""Sentences of a Hugging Face `datasets` data set already on disk (``data.format = "hf"``),
streamed a record batch at a time with pyarrow: nothing is downloaded, nothing held.

``data.path`` is one of
- a folder written by ``Dataset.save_to_disk`` (``state.json`` and ``*.arrow`` shards, read
  by memory map);
- a folder written by ``DatasetDict.save_to_disk`` (``dataset_dict.json``): its ``train``
  split is the corpus, and its ``validation`` (or ``valid``, ``dev``) and ``test`` splits,
  when there, are those splits (else they are held out of train by fraction);
- a Parquet file, or a folder of them (``*.parquet``, read in file-name order).

``data.text_column`` holds the sentences; with ``data.labels = "column"``,
``data.label_column`` their classes: a ``ClassLabel`` column gives its names, any other
column its values as text. Empty and missing sentences are skipped, as blank lines are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from vaezoo import InputError

from vaezoo_text.config import DataConfig

SPLIT_NAMES = {"validation": ("validation", "valid", "dev"), "test": ("test",)}
BATCH_ROWS = 8192


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("data.format = 'hf' reads Arrow and Parquet files with pyarrow, which is not installed: "
                         "pip install pyarrow (or vaezoo-text[hf])") from None
    return pyarrow


def _saved_files(folder: Path) -> list[Path]:
    """The Arrow shards of a ``Dataset.save_to_disk`` folder, in order."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        files = [folder / entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{folder}/state.json: not a saved Hugging Face dataset ({err})") from None
    for file in files:
        if not file.is_file():
            raise InputError(f"{file}: listed in {folder}/state.json but missing")
    return files


def split_sources(path: Path) -> dict[str, list[Path]]:
    """The files of each split the data set at ``path`` has: always "train" (the corpus), and
    "validation" / "test" when a DatasetDict holds them."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputError(f"{path}: data.format = 'hf' takes a saved dataset folder, a .parquet file or a folder of them")
        return {"train": [path]}
    if not path.is_dir():
        raise InputError(f"{path}: not found")
    if (path / "dataset_dict.json").is_file():
        try:
            names = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}/dataset_dict.json: not a saved Hugging Face DatasetDict ({err})") from None
        if "train" not in names:
            raise InputError(f"{path}: the DatasetDict has no 'train' split (it has {', '.join(map(str, names))})")
        sources = {"train": _saved_files(path / "train")}
        for split, aliases in SPLIT_NAMES.items():
            found = next((name for name in aliases if name in names), None)
            if found is not None:
                sources[split] = _saved_files(path / found)
        return sources
    if (path / "state.json").is_file():
        return {"train": _saved_files(path)}
    parquet = sorted(path.glob("*.parquet"))
    if parquet:
        return {"train": parquet}
    raise InputError(f"{path}: neither a saved Hugging Face dataset (state.json, dataset_dict.json) "
                     "nor a folder of .parquet files")


def _batches(file: Path, columns: list[str]) -> Iterator[tuple[dict[str, list], dict]]:
    """Record batches of ``columns`` (as Python lists) and the file's features (from the
    Hugging Face metadata, {} without it)."""
    pa = _pyarrow()
    try:
        if file.suffix == ".parquet":
            reader = pa.parquet.ParquetFile(str(file))
            schema = reader.schema_arrow
            batches = reader.iter_batches(batch_size=BATCH_ROWS, columns=columns) if _has(schema, columns, file) else []
        else:
            reader = pa.ipc.open_stream(pa.memory_map(str(file)))
            schema = reader.schema
            _has(schema, columns, file)
            batches = reader
        features = _features(schema, file)
        for batch in batches:
            yield {name: batch.column(name).to_pylist() for name in columns}, features
    except pa.ArrowException as err:
        raise InputError(f"{file}: cannot read it ({err})") from None


def _has(schema, columns: list[str], file: Path) -> bool:
    missing = [name for name in columns if name not in schema.names]
    if missing:
        raise InputError(f"{file}: no column {missing[0]!r} (the columns: {', '.join(schema.names)}); "
                         "set data.text_column / data.label_column")
    return True


def _features(schema, file: Path) -> dict:
    """The data set's features from the schema's Hugging Face metadata ({} if it has none)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        features = json.loads((file.parent / "dataset_info.json").read_text()).get("features", {}) \
            if (file.parent / "dataset_info.json").is_file() else {}
        return features if isinstance(features, dict) else {}
    try:
        return json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}


def iter_examples(files: list[Path], cfg: DataConfig) -> Iterator[tuple[str, str | None]]:
    """(sentence, label) of the rows of ``files`` in order; label None unless labels = "column"."""
    labelled = cfg.labels == "column"
    columns = [cfg.text_column] + ([cfg.label_column] if labelled else [])
    for file in files:
        row = 0
        for batch, features in _batches(file, columns):
            names = (features.get(cfg.label_column) or {}).get("names") if labelled else None
            labels = batch[cfg.label_column] if labelled else [None] * len(batch[cfg.text_column])
            for text, label in zip(batch[cfg.text_column], labels):
                row += 1
                if text is not None and not isinstance(text, str):
                    raise InputError(f"{file}, row {row}: column {cfg.text_column!r} holds {type(text).__name__}, "
                                     "not text; set data.text_column to the column of sentences")
                sentence = " ".join(text.split()) if text else ""
                if not sentence:
                    continue
                if labelled and label is None:
                    raise InputError(f"{file}, row {row}: no label in column {cfg.label_column!r}")
                if names and isinstance(label, int) and 0 <= label < len(names):
                    label = names[label]
                yield sentence, None if label is None else str(label)
