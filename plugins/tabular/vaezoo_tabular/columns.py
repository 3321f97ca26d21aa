"""The schema of a table: each column's type and normalisation, fitted once and kept as JSON.

Real columns are modelled standardised (value - mean) / sd, with mean and sd taken from the
observed cells of the training rows only, so validation and test rows leak nothing into
them. A categorical column's categories are the distinct observed values of the whole
file (sorted): a category is part of what the column can hold, not a statistic, and a test
row with a category the training rows happen to lack must still be readable.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from vaezoo import InputError

from vaezoo_tabular.table import Table

REAL, CATEGORICAL = "real", "categorical"


@dataclass
class Column:
    name: str
    kind: str
    mean: float = 0.0
    sd: float = 1.0
    categories: list[str] = field(default_factory=list)


def _label_position(table: Table, label: str) -> int:
    if label not in table.columns:
        raise InputError(f"{table.path}: [data] label_column: no column {label!r} in the header "
                         f"(columns: {', '.join(table.columns)})")
    return table.columns.index(label)


def _label_cell(table: Table, i: int, at: int, label: str) -> str:
    cell = table.rows[i][at]
    if cell is None:
        raise InputError(f"{table.path}: line {table.lines[i]}: label column {label!r} is missing; "
                         "every row needs a label (fill it in, or drop the row)")
    return cell


def _classes(table: Table, train_rows: list[int], label: str) -> list[str]:
    """The sorted distinct labels of the training rows; every row of the file must hold one of them."""
    at = _label_position(table, label)
    cells = [_label_cell(table, i, at, label) for i in range(len(table.rows))]  # a missing label anywhere: refused
    classes = sorted({cells[i] for i in train_rows})
    known = set(classes)
    unknown = next((i for i, cell in enumerate(cells) if cell not in known), None)
    if unknown is not None:
        raise InputError(f"{table.path}: line {table.lines[unknown]}: label column {label!r} holds "
                         f"{cells[unknown]!r}, which no training row has (known classes: {', '.join(classes)}); "
                         "a validation or test class must also occur in the training rows")
    return classes


def _number(cell: str) -> float | None:
    """The cell as a finite float, or None when it is not one."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Schema:
    columns: list[Column]
    label: str | None = None          # [data] label_column: read as the batches' "label", never modelled
    classes: list[str] = field(default_factory=list)  # its classes (label i -> classes[i]), from the training rows

    @classmethod
    def infer(cls, table: Table, train_rows: list[int], categorical=(), real=(), drop=(), label=None) -> "Schema":
        """Column types (declared, else numeric -> real, otherwise categorical) and statistics."""
        classes = _classes(table, train_rows, label) if label is not None else []
        if label is not None:
            drop = [*drop, label]
        for option, names in (("categorical", categorical), ("real", real), ("drop", drop)):
            unknown = [n for n in names if n not in table.columns]
            if unknown:
                raise InputError(f"{table.path}: [data] {option}: no column {unknown[0]!r} in the header "
                                 f"(columns: {', '.join(table.columns)})")
        both = set(categorical) & set(real)
        if both:
            raise InputError(f"[data] categorical and real both name column {sorted(both)[0]!r}; a column has one type")
        columns = []
        for j, name in enumerate(table.columns):
            if name in drop:
                continue
            cells = [(i, cell) for i, row in enumerate(table.rows) if (cell := row[j]) is not None]
            numbers = [_number(c) for _, c in cells]
            if not cells:
                raise InputError(f"{table.path}: column {name!r} has no observed value; drop it ([data] drop)")
            if name in categorical or (name not in real and any(v is None for v in numbers)):
                columns.append(Column(name, CATEGORICAL, categories=sorted({c for _, c in cells})))
                continue
            bad = next((i for (i, _), v in zip(cells, numbers) if v is None), None)
            if bad is not None:
                raise InputError(f"{table.path}: line {table.lines[bad]}: column {name!r} is declared real "
                                 f"but holds {table.rows[bad][j]!r}; a real cell is a number or a missing marker")
            train = set(train_rows)
            seen = [v for (i, _), v in zip(cells, numbers) if i in train and v is not None]  # all numbers here
            if not seen:
                raise InputError(f"{table.path}: column {name!r} has no observed value in the training rows; "
                                 f"drop it ([data] drop) or declare it categorical")
            mean = sum(seen) / len(seen)
            sd = math.sqrt(sum((v - mean) ** 2 for v in seen) / len(seen))
            # a constant column is kept (sd 1): its standardised values are all 0
            columns.append(Column(name, REAL, mean=mean, sd=sd if sd > 0 else 1.0))
        if not columns:
            raise InputError(f"{table.path}: every column is dropped; nothing left to model")
        return cls(columns, label, classes)

    # -- persistence: JSON in the run directory, never pickled

    def to_json(self) -> dict:
        out: dict = {"columns": [asdict(c) for c in self.columns]}
        if self.label is not None:  # without a label column, the file is as it always was
            out["label"] = {"column": self.label, "classes": list(self.classes)}
        return out

    @classmethod
    def from_json(cls, path: Path) -> "Schema":
        data = json.loads(Path(path).read_text())
        label = data.get("label") or {}
        return cls([Column(**c) for c in data["columns"]], label.get("column"), list(label.get("classes", [])))

    # -- labels

    def labels(self, table: Table, rows: Sequence[int] | None = None) -> torch.Tensor:
        """int64 [N]: each picked row's class index in ``classes``; a missing or unknown value is an InputError."""
        assert self.label is not None, "labels() of a schema without a label column"
        picked: Sequence[int] = range(len(table.rows)) if rows is None else rows
        at = _label_position(table, self.label)
        index = {name: k for k, name in enumerate(self.classes)}
        out = torch.empty(len(picked), dtype=torch.int64)
        for n, i in enumerate(picked):
            cell = _label_cell(table, i, at, self.label)
            if cell not in index:
                raise InputError(f"{table.path}: line {table.lines[i]}: label column {self.label!r} holds {cell!r}, "
                                 f"which no training row has (known classes: {', '.join(self.classes)})")
            out[n] = index[cell]
        return out

    # -- shapes the model needs

    @property
    def real(self) -> list[int]:
        return [j for j, c in enumerate(self.columns) if c.kind == REAL]

    @property
    def categorical(self) -> list[int]:
        return [j for j, c in enumerate(self.columns) if c.kind == CATEGORICAL]

    @property
    def sizes(self) -> list[int]:
        """Number of categories of each categorical column, in order."""
        return [len(self.columns[j].categories) for j in self.categorical]

    # -- cells <-> tensors

    def positions(self, table: Table) -> list[int]:
        """Where each schema column sits in TABLE's header; other columns pass through untouched."""
        missing = [c.name for c in self.columns if c.name not in table.columns]
        if missing:
            raise InputError(f"{table.path}: line 1: no column {missing[0]!r}; the model was trained on columns "
                             f"{', '.join(c.name for c in self.columns)}")
        return [table.columns.index(c.name) for c in self.columns]

    def encode(self, table: Table, rows: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, C] (real: standardised value, categorical: category index) and mask [N, C] (1 = observed).

        Missing cells hold 0 in x; the model never reads them (the mask zeroes them).
        """
        picked: Sequence[int] = range(len(table.rows)) if rows is None else rows
        where = self.positions(table)
        index = [{v: k for k, v in enumerate(c.categories)} for c in self.columns]
        x = torch.zeros(len(picked), len(self.columns))
        mask = torch.zeros(len(picked), len(self.columns))
        for n, i in enumerate(picked):
            for j, (column, at) in enumerate(zip(self.columns, where)):
                cell = table.rows[i][at]
                if cell is None:
                    continue
                if column.kind == REAL:
                    value = _number(cell)
                    if value is None:
                        raise InputError(f"{table.path}: line {table.lines[i]}: column {column.name!r} is real "
                                         f"but holds {cell!r}; expected a number or a missing marker")
                    x[n, j] = (value - column.mean) / column.sd
                else:
                    if cell not in index[j]:
                        raise InputError(f"{table.path}: line {table.lines[i]}: column {column.name!r}: unknown "
                                         f"category {cell!r} (known: {', '.join(column.categories)})")
                    x[n, j] = index[j][cell]
                mask[n, j] = 1.0
        return x, mask

    def cells(self, values: torch.Tensor) -> list[list[str]]:
        """Model-space values [N, C] back to text: reals unstandardised, category indices to names."""
        out = []
        for row in values.tolist():
            text = []
            for v, column in zip(row, self.columns):
                if column.kind == REAL:
                    text.append(f"{v * column.sd + column.mean:.6g}")
                else:
                    text.append(column.categories[int(round(v))])
            out.append(text)
        return out
