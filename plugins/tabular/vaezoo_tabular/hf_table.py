"""A table from a Hugging Face ``datasets`` data set already on disk (``data.format = "hf"``), through
the core's reader (``vaezoo.hf_splits``, ``vaezoo.hf_batches``: a saved Dataset or DatasetDict
folder, or Parquet files, a record batch at a time with pyarrow). Nothing is downloaded.

It makes the ``Table`` a CSV of the same data would give, so the schema, the splits and the
writers work unchanged: cells are text as a CSV holds them (ints ``"3"``, floats their shortest
``repr`` at the column's width, so a float column's 1.0 is ``"1.0"`` and a float32 0.1 is
``"0.1"``; bools ``"True"`` / ``"False"``, so a bool column is categorical; strings stripped);
a null, a NaN, a ClassLabel's -1 (no label) and a ``data.missing`` marker are missing; a
ClassLabel column holds its class names, so it is categorical. A column of lists, structs,
binary, dates or any other value is refused unless ``data.drop`` lists it (then its cells are
missing; a dropped column of plain values is read as any other, for the writers). Rows are
numbered 1, 2, ... in the order read (train, then validation, then test), and messages about
the table call row N its "line N".

A DatasetDict's validation and test splits are the table's last rows, kept as given splits
(``Table.given``); a split it lacks is held out of the train rows by its fraction.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Sequence

import vaezoo
from vaezoo import InputError

from vaezoo_tabular.table import Table

_INTS = {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
_FLOAT_WIDTH = {"float16": "e", "float32": "f", "float64": None}   # struct formats of the narrow floats
_PLAIN = _INTS | set(_FLOAT_WIDTH) | {"bool", "string", "large_string", "null"}
_DROP_IT = "a table cell is one number or string, so list the column in data.drop"


def is_hf(path: Path, format: str) -> bool:
    """Whether ``data.path`` is read as a Hugging Face data set: format 'hf', or 'auto' and the
    path a folder or a .parquet file (any other file is a CSV table, as it always was)."""
    return format == "hf" or (format == "auto" and (path.is_dir() or path.suffix == ".parquet"))


def read_hf_table(path: str | Path, missing: Sequence[str], drop: Sequence[str] = ()) -> Table:
    """The data set at PATH as a Table of text cells (None = missing); see the module's docstring."""
    path = Path(path)
    splits = vaezoo.hf_splits(path)
    first = splits["train"][0]
    names = vaezoo.hf_columns(first)
    markers = {m.strip() for m in missing}
    rows: list[list[str | None]] = []
    given: dict[str, list[int]] = {}
    for split in ("train", "validation", "test"):
        start = len(rows)
        for batch in vaezoo.hf_batches(splits.get(split, []), names, hint=f"every file needs the columns of {first}"):
            rows.extend(list(row) for row in zip(*(_cells(batch, name, markers, name in drop) for name in names)))
        if split != "train" and len(rows) > start:
            given[split] = list(range(start, len(rows)))
    if not rows:
        raise InputError(f"{path}: no rows; a table needs at least one row")
    return Table(path, names, rows, list(range(1, len(rows) + 1)), given)


def _cells(batch: vaezoo.HFBatch, name: str, markers: set[str], dropped: bool) -> list[str | None]:
    """Column NAME of BATCH as the text cells a CSV of it would hold (None = missing); a value no
    cell can hold is an InputError, or missing in a DROPPED column."""
    feature = batch.features.get(name)
    refused = _refused(feature)
    if refused and dropped:
        return [None] * len(batch)
    if refused:
        article = "an" if refused[:1].lower() in "aeiou" else "a"
        raise InputError(f"{batch.file}: column {name!r} is {article} {refused} column; {_DROP_IT}")
    classes = batch.class_names(name)
    width = _FLOAT_WIDTH.get(str(feature.get("dtype"))) if isinstance(feature, dict) else None
    out: list[str | None] = []
    for row, value in enumerate(batch.columns[name], batch.first_row):
        try:
            text = _text(value, classes, width)
        except ValueError as err:
            if not dropped:
                raise InputError(f"{batch.file}, row {row}: column {name!r} {err}") from None
            text = None
        out.append(None if text is None or text in markers else text)
    return out


def _text(value: object, classes: list[str] | None, width: str | None) -> str | None:
    """One value as a CSV holds it (None = missing); ValueError says what is wrong with it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if classes is not None:
        if value == -1:   # ClassLabel's "no label"
            return None
        if not isinstance(value, int) or not 0 <= value < len(classes):
            raise ValueError(f"holds class {value!r}, but its ClassLabel has {len(classes)} classes "
                             f"(0 to {len(classes) - 1}, or -1 for none)")
        return classes[value].strip()
    if isinstance(value, int):   # bools too: str(True) is "True", so a bool column is categorical
        return str(value)
    if isinstance(value, float):
        return _float_text(value, width)
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"holds {type(value).__name__}; {_DROP_IT}")


def _float_text(value: float, width: str | None) -> str:
    """``repr`` of the shortest decimal that is still VALUE at the column's width (struct format
    'e' float16, 'f' float32; None float64): float32's 0.1 is "0.1", not "0.10000000149011612"."""
    if width is not None:
        for digits in range(1, 10):
            short = float(f"{value:.{digits}g}")
            try:
                if struct.unpack(width, struct.pack(width, short))[0] == value:
                    return repr(short)
            except OverflowError:   # rounded past the width's largest value: take more digits
                continue
    return repr(value)


def _refused(feature: object) -> str | None:
    """What kind of column a Hugging Face feature is when a table cannot hold it, else None
    (None too without metadata: then the values decide)."""
    if feature is None:
        return None
    if isinstance(feature, list):
        return "list"
    if not isinstance(feature, dict):
        return type(feature).__name__
    kind = feature.get("_type")
    if kind is None:
        return "struct"   # a dict of sub-features
    if kind == "ClassLabel" or (kind == "Value" and feature.get("dtype") in _PLAIN):
        return None
    return str(feature.get("dtype")) if kind == "Value" else str(kind)
