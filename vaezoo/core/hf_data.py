"""Data sets in the Hugging Face ``datasets`` format already on disk, for any plugin: read a
record batch at a time with pyarrow, the Arrow shards by memory map. Nothing is downloaded
and nothing is held whole (plugin API 1.6: ``vaezoo.hf_splits``, ``vaezoo.hf_batches``).

A data set is one of
- a folder written by ``Dataset.save_to_disk`` (``state.json`` and ``*.arrow`` shards);
- a folder written by ``DatasetDict.save_to_disk`` (``dataset_dict.json``): its ``train``
  split, and its ``validation`` (or ``valid``, ``dev``) and ``test`` splits when it has them;
- a Parquet file, or a folder of them (``*.parquet``, read in file-name order).

pyarrow is optional: a plugin that offers this source says how to install it (``vaezoo[hf]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from vaezoo.core.errors import InputError

SPLIT_NAMES = {"validation": ("validation", "valid", "dev"), "test": ("test",)}
BATCH_ROWS = 8192


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("data.format = 'hf' reads Arrow and Parquet files with pyarrow, which is not installed: "
                         "pip install pyarrow (or vaezoo[hf])") from None
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


def hf_splits(path: Path | str) -> dict[str, list[Path]]:
    """The files of each split of the data set at ``path``: always "train", and "validation" /
    "test" when a DatasetDict holds them. Anything else: ``InputError`` naming what was found."""
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


@dataclass
class HFBatch:
    """Consecutive rows of one file: ``columns`` maps each column asked for to its values (Python
    objects: str, int, float, None, dicts for structs such as an ``Image`` feature's
    ``{"bytes", "path"}``); ``first_row`` is the 1-based number of the batch's first row in
    ``file``; ``features`` the data set's features from its Hugging Face metadata ({} without)."""

    file: Path
    first_row: int
    columns: dict[str, list]
    features: dict

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def class_names(self, column: str) -> list[str] | None:
        """The names of a ``ClassLabel`` column's classes (None for any other column)."""
        names = (self.features.get(column) or {}).get("names") if isinstance(self.features.get(column), dict) else None
        return [str(n) for n in names] if isinstance(names, list) else None


def hf_columns(file: Path | str) -> list[str]:
    """The column names of one file (an Arrow shard or a Parquet file), in order."""
    return list(_open(Path(file))[0].names)


def hf_batches(files: list[Path], columns: list[str] | None = None, *, hint: str = "",
               rows: int = BATCH_ROWS) -> Iterator[HFBatch]:
    """The rows of ``files`` in order with ``columns`` (None: all of them): a Parquet file ``rows``
    at a time, an Arrow shard in its own record batches (``datasets`` writes 1,000 rows each).
    A column a file lacks is an ``InputError`` that lists the file's columns and ends with
    ``hint`` (say, which recipe option names the column)."""
    pa = _pyarrow()
    for file in files:
        first = 1
        try:
            schema, batches = _open(file, columns, rows)
            names = list(schema.names) if columns is None else columns
            missing = [name for name in names if name not in schema.names]
            if missing:
                raise InputError(f"{file}: no column {missing[0]!r} (the columns: {', '.join(schema.names)})"
                                 + (f"; {hint}" if hint else ""))
            features = _features(schema, file)
            for batch in batches:
                yield HFBatch(file, first, {name: batch.column(name).to_pylist() for name in names}, features)
                first += batch.num_rows
        except pa.ArrowException as err:
            raise InputError(f"{file}: cannot read it ({err})") from None


def _open(file: Path, columns: list[str] | None = None, rows: int = BATCH_ROWS) -> tuple[Any, Any]:
    """(schema, record batches) of a Parquet file or an Arrow stream shard (memory-mapped)."""
    pa = _pyarrow()
    try:
        if file.suffix == ".parquet":
            reader = pa.parquet.ParquetFile(str(file))
            schema = reader.schema_arrow
            wanted = columns if columns is None or all(c in schema.names for c in columns) else []
            return schema, reader.iter_batches(batch_size=rows, columns=wanted)
        reader = pa.ipc.open_stream(pa.memory_map(str(file)))
        return reader.schema, reader
    except (OSError, pa.ArrowException) as err:
        raise InputError(f"{file}: cannot read it ({err})") from None


def _features(schema, file: Path) -> dict:
    """The data set's features from the schema's Hugging Face metadata, else from the folder's
    ``dataset_info.json`` ({} if neither has them)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        info = file.parent / "dataset_info.json"
        try:
            features = json.loads(info.read_text(encoding="utf-8")).get("features", {}) if info.is_file() else {}
        except (OSError, ValueError, AttributeError):
            features = {}
        return features if isinstance(features, dict) else {}
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}
