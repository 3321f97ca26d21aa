"""Reading a CSV table: a header row, then one row per record; marked cells are missing.

Cells stay text here (what the file says, stripped of surrounding spaces), with None for
a missing cell: deciding what a column holds is the schema's job (columns.py), and the
imputed CSV writes observed cells back exactly as they were read.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from vaezoo import InputError

DEFAULT_MISSING = ("", "NA", "?")


@dataclass
class Table:
    """A parsed CSV: column names, rows of cells (None = missing), and each row's line number.

    ``given``: the rows of the validation and test splits the source names itself (a Hugging
    Face DatasetDict's, see hf_table.py); a CSV names none, and its splits are held out by fraction.
    """

    path: Path
    columns: list[str]
    rows: list[list[str | None]]
    lines: list[int]
    given: dict[str, list[int]] = field(default_factory=dict)


def read_table(path: str | Path, missing: tuple[str, ...] | list[str] = DEFAULT_MISSING) -> Table:
    """Parse PATH; any malformed line is one InputError naming the file and the line."""
    path = Path(path)
    markers = {m.strip() for m in missing}
    try:
        # utf-8-sig: spreadsheets often start CSV exports with a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            header = _header(path, reader)
            rows, lines = [], []
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # a blank line (a row of empty cells has commas, and is kept)
                if len(record) != len(header):
                    raise InputError(f"{path}: line {reader.line_num}: {len(record)} fields, "
                                     f"the header (line 1) has {len(header)}")
                cells = [cell.strip() for cell in record]
                rows.append([None if cell in markers else cell for cell in cells])
                lines.append(reader.line_num)
    except csv.Error as e:
        raise InputError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save the table as UTF-8 CSV") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the table ({e.strerror or e})") from None
    if not rows:
        raise InputError(f"{path}: no data rows after the header; a table needs at least one row")
    return Table(path, header, rows, lines)


def _header(path: Path, reader) -> list[str]:
    """The first non-blank record: unique, non-empty column names."""
    for record in reader:
        names = [cell.strip() for cell in record]
        if not any(names):
            continue
        if "" in names:
            raise InputError(f"{path}: line {reader.line_num}: column {names.index('') + 1} of the header has no name")
        seen = set()
        for name in names:
            if name in seen:
                raise InputError(f"{path}: line {reader.line_num}: column name {name!r} appears twice in the header")
            seen.add(name)
        return names
    raise InputError(f"{path}: empty file; expected a header row of column names, then data rows")


def write_table(path: Path, columns: list[str], rows: list[list[str]]) -> None:
    """Write rows of text cells under a header (the caller makes the write atomic)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
