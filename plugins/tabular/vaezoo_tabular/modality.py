"""The tabular modality: rows of a table (a CSV file, or a Hugging Face data set on disk) with real
and categorical columns, some cells missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import vaezoo
from vaezoo import InputError, VaezooError, option

from vaezoo_tabular.hf_table import is_hf, read_hf_table
from vaezoo_tabular.table import DEFAULT_MISSING, Table, read_table

if TYPE_CHECKING:  # torch, the schema, the networks and the writers load when an instance needs them
    import torch
    from torch.utils.data import Dataset as _Dataset

    from vaezoo_tabular.columns import Schema
    from vaezoo_tabular.networks import Decoder, Encoder
else:
    _Dataset = object   # a map-style dataset needs no base class at run time

SCHEMA = "schema.json"


@dataclass
class DataConfig:
    path: Path = option(help="the table: a CSV file (a header row, then one row per record), or (format 'hf') a "
                             "Hugging Face data set on disk", must_exist=True)
    format: Literal["auto", "csv", "hf"] = option(
        "auto", help="'csv': path is a CSV file; 'hf': a Hugging Face datasets data set on disk, never downloaded "
                     "(a save_to_disk folder of a Dataset or DatasetDict, a .parquet file or a folder of them; "
                     "needs pyarrow: pip install 'vaezoo-tabular[hf]'), read as the same table a CSV of it would be "
                     "(nulls missing, ClassLabel columns their class names, bools True/False; list, struct and "
                     "binary columns must be dropped), a DatasetDict's validation and test splits used as given; "
                     "'auto': a folder or a .parquet file is 'hf', any other file 'csv'")
    categorical: list[str] = option([], help="columns to model as categorical even if every value is a number")
    real: list[str] = option([], help="columns that must be real-valued (a non-number there is an error)")
    drop: list[str] = option([], help="columns to ignore (identifiers, free text)")
    missing: list[str] = option(list(DEFAULT_MISSING), help="cell values that mean 'missing'")
    validation_fraction: float = option(0.1, min=0.0, max=0.5,
                                        help="rows held out for validation; 0 = validate on the training rows")
    test_fraction: float = option(0.1, min=0.0, max=0.5, help="rows held out for testing; 0 = test on the training rows")
    split_seed: int = option(0, help="seed of the row split (not the recipe's seed, so the split stays put)")
    label_column: str | None = option(
        None, help="a column of class labels: batches carry it as \"label\" (latent-map colours and scores), "
                   "it is not modelled; its classes are the training rows' distinct values, sorted")

    def check(self) -> None:
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("validation_fraction + test_fraction must leave rows for training (sum < 1)")
        for option_name in ("drop", "categorical", "real"):
            if self.label_column is not None and self.label_column in getattr(self, option_name):
                raise ValueError(f"label_column {self.label_column!r} is also listed in {option_name}; "
                                 f"a label column is never modelled, so remove it from {option_name}")


@dataclass
class ModelConfig:
    hidden: list[int] = option([64, 64], gt=0, help="widths of the encoder's and decoder's hidden layers")
    scale: Literal["column", "row"] = option("column", help="real columns' sd: one learned per column, or output per row")
    min_log_sd: float = option(-3.0, help="soft floor on the log sd of real columns (standardised units)")


class _Rows(_Dataset):
    """Encoded rows of one split, in memory; items carry the original cells for the writers (a
    map-style dataset: ``__len__`` and ``__getitem__``, plus ``__getitems__`` for whole batches)."""

    def __init__(self, x: torch.Tensor, mask: torch.Tensor, cells: list[list[str | None]], columns: list[str], source: str,
                 label: torch.Tensor | None = None):
        self.x, self.mask, self.cells, self.columns, self.source = x, mask, cells, columns, source
        self.label = label  # int64 [N] with [data] label_column, else None (and items have no "label")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        item = {"x": self.x[i], "mask": self.mask[i], "cells": self.cells[i], "columns": self.columns, "source": self.source}
        if self.label is not None:
            item["label"] = self.label[i]
        return item

    def __getitems__(self, indices: list[int]) -> dict:
        # the fast path: one indexing per tensor instead of a stack of N items
        batch = {"x": self.x[indices], "mask": self.mask[indices], "cells": [self.cells[i] for i in indices],
                 "columns": [self.columns] * len(indices), "source": [self.source] * len(indices)}
        if self.label is not None:
            batch["label"] = self.label[indices]
        return batch


class TabularModality(vaezoo.Modality):
    name = "tabular"
    api_version = vaezoo.PLUGIN_API_VERSION
    description = ("Mixed real/categorical tables from CSV or Hugging Face datasets with missing cells "
                   "(HI-VAE-style masked likelihood, imputation)")
    sections = {"data": DataConfig, "model": ModelConfig}
    example_recipe = {"data": {"path": "examples/health.csv"}, "model": {"hidden": [16]}, "latent": {"dim": 2}}
    recipe_folder = "recipes"     # vaezoo recipes lists tabular-health; vaezoo train tabular-health finds it

    def __init__(self, recipe, run_dir=None):
        super().__init__(recipe, run_dir)
        self._table: Table | None = None
        self._schema: Schema | None = None

    # -- data

    def table(self) -> Table:
        if self._table is None:
            data = self.recipe.data
            if is_hf(data.path, data.format):
                self._table = read_hf_table(data.path, data.missing, data.drop)
            else:
                self._table = read_table(data.path, data.missing)
        return self._table

    def split_rows(self) -> dict[str, list[int]]:
        """Row indices per split: seeded, disjoint; a split with fraction 0 is the training rows. A split
        the table gives itself (a DatasetDict's) is used as it is, and no rows are held out for it."""
        data, given = self.recipe.data, self.table().given
        n = len(self.table().rows) - sum(len(rows) for rows in given.values())   # the train rows come first
        test_fraction = 0.0 if "test" in given else data.test_fraction
        validation_fraction = 0.0 if "validation" in given else data.validation_fraction
        rest, test = vaezoo.split_indices(n, test_fraction, data.split_seed)
        # validation's share of the remaining rows, so the fractions stay fractions of the whole table
        share = validation_fraction / (1.0 - test_fraction)
        keep, validation = vaezoo.split_indices(len(rest), share, data.split_seed + 1)
        train = [rest[i] for i in keep]
        validation = given.get("validation") or [rest[i] for i in validation] or train
        return {"train": train, "validation": validation, "test": given.get("test") or test or train}

    def fit(self, run_dir: Path) -> None:
        from vaezoo_tabular.columns import Schema

        data = self.recipe.data
        schema = Schema.infer(self.table(), self.split_rows()["train"], data.categorical, data.real, data.drop,
                              data.label_column)
        vaezoo.write_json(Path(run_dir) / SCHEMA, schema.to_json())
        self.run_dir, self._schema = Path(run_dir), None

    def schema(self) -> Schema:
        if self._schema is None:
            path = None if self.run_dir is None else Path(self.run_dir) / SCHEMA
            if path is None or not path.exists():
                raise VaezooError(f"the tabular modality needs a run directory holding {SCHEMA}, written by fit "
                                  f"(vaezoo train); none at {path}")
            from vaezoo_tabular.columns import Schema

            self._schema = Schema.from_json(path)
        return self._schema

    def _rows(self, table: Table, rows: Sequence[int] | None = None, labels: bool = False) -> _Rows:
        rows = list(range(len(table.rows))) if rows is None else list(rows)
        schema = self.schema()
        x, mask = schema.encode(table, rows)
        label = schema.labels(table, rows) if labels and schema.label is not None else None
        return _Rows(x, mask, [table.rows[i] for i in rows], table.columns, str(table.path), label)

    def dataset(self, split: str) -> _Rows:
        # the splits carry labels with [data] label_column; tables given on the command line do not
        return self._rows(self.table(), self.split_rows()[split], labels=True)

    @property
    def label_names(self) -> list[str] | None:
        """With ``data.label_column``, its classes (label i -> name), as fitted and saved in schema.json."""
        if self.recipe.data.label_column is None:
            return None
        return list(self.schema().classes)

    def collate(self, examples):
        import torch

        if isinstance(examples, dict):
            return examples
        batch = {"x": torch.stack([e["x"] for e in examples]), "mask": torch.stack([e["mask"] for e in examples]),
                 "cells": [e["cells"] for e in examples], "columns": [e["columns"] for e in examples],
                 "source": [e["source"] for e in examples]}
        if all("label" in e for e in examples):
            batch["label"] = torch.stack([e["label"] for e in examples])
        return batch

    def load_inputs(self, items: Sequence[str]) -> dict:
        """Tables with (at least) the training table's columns: CSV files, or Hugging Face data sets
        on disk (a saved folder or .parquet files: all their rows, train then validation then test);
        their missing cells get imputed. With ``data.label_column``, a table that has that column
        gives its rows' classes as ``"label"`` (what a conditional model reads); every table must
        then have it, or none."""
        import torch

        parts: list[dict] = []
        label = self.schema().label
        data = self.recipe.data
        for item in items:
            if is_hf(Path(item), "auto"):
                table = read_hf_table(item, data.missing, data.drop)
            elif Path(item).is_file():
                table = read_table(item, data.missing)
            else:
                raise InputError(f"{item}: not found; the tabular modality reads CSV files (a header row, then rows) "
                                 "and Hugging Face data sets on disk (a saved folder or .parquet files)")
            rows = self._rows(table, labels=label is not None and label in table.columns)
            if parts and (rows.label is None) != ("label" not in parts[0]):
                raise InputError(f"{item}: some input tables have the label column {label!r} and some do not; "
                                 "give it in all of them or in none")
            parts.append(vaezoo.first_examples(rows, self.collate, len(rows)))
        return {key: torch.cat([p[key] for p in parts]) if key in ("x", "mask", "label") else sum((p[key] for p in parts), [])
                for key in parts[0]}

    # -- networks

    def build_encoder(self) -> Encoder:
        from vaezoo_tabular.networks import Encoder

        s = self.schema()
        return Encoder(s.real, s.categorical, s.sizes, self.recipe.model.hidden, self.recipe.latent.dim,
                       self.encoder_condition_dim)

    def build_decoder(self) -> Decoder:
        from vaezoo_tabular.networks import Decoder

        s, m = self.schema(), self.recipe.model
        return Decoder(s.real, s.categorical, s.sizes, list(reversed(m.hidden)), self.decoder_input_dim,
                       m.scale, m.min_log_sd)

    # -- files a person opens

    def write_reconstructions(self, batch, px, stem: Path) -> list[Path]:
        """One CSV per input file: observed cells as they were, missing cells from the decoded posterior mean."""
        from vaezoo_tabular.imputation import write_filled

        return write_filled(self.schema(), batch, px.mean, stem)

    def write_samples(self, px, stem: Path) -> list[Path]:
        """Synthetic rows: one draw of every cell from the decoded prior samples."""
        from vaezoo_tabular.imputation import write_filled

        return write_filled(self.schema(), None, px.sample(), stem)
