"""A table from a Hugging Face dataset on disk (data.format = "hf"): a save_to_disk folder or
Parquet files give the Table a CSV of the same data gives, so they fit and train the same."""

from __future__ import annotations

import csv
import json
import os
import random

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import vaezoo
from vaezoo import InputError
from vaezoo.cli import main
from vaezoo_tabular import TabularModality
from vaezoo_tabular.columns import Schema
from vaezoo_tabular.hf_table import read_hf_table
from vaezoo_tabular.table import DEFAULT_MISSING, read_table

from test_tabular_cli import FAST, train_table, write_recipe

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
datasets.disable_progress_bars()

GRADES = ["low", "mid", "high"]
FEATURES = {"id": "string", "size": "float64", "count": "int64", "colour": "string", "grade": GRADES, "flag": "bool"}


def features():
    return datasets.Features({name: datasets.ClassLabel(names=kind) if isinstance(kind, list) else datasets.Value(kind)
                              for name, kind in FEATURES.items()})


def make_columns(n=80, seed=0, complete=("id",)):
    """Real (size: floats, row 0 exactly 1.0), integer, string and ClassLabel categorical, and bool
    columns, about 15% of each but COMPLETE's missing (None; a ClassLabel's -1 in odd rows), " blue"
    padded and a few "NA" colours (a missing marker)."""
    rng = random.Random(seed)
    data: dict[str, list] = {name: [] for name in FEATURES}
    for i in range(n):
        size = 1.0 if i == 0 else round(rng.gauss(0, 1), 3)
        row = {"id": f"r{i}", "size": size, "count": rng.randint(0, 9),
               "colour": "NA" if i % 17 == 5 else "red" if size > 0 else " blue", "grade": rng.randrange(3),
               "flag": size > 0.5}
        for name, value in row.items():
            missing = name not in complete and i > 0 and rng.random() < 0.15
            data[name].append((-1 if name == "grade" and i % 2 else None) if missing else value)
    return data


def write_csv(path, data):
    """The CSV of DATA: what pandas' to_csv writes (repr of floats, True/False, empty cells for None)."""
    def text(name, value):
        if value is None or (name == "grade" and value == -1):
            return ""
        return GRADES[value] if name == "grade" else repr(value) if isinstance(value, float) else str(value)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(data))
        writer.writerows([text(name, data[name][i]) for name in data] for i in range(len(data["id"])))
    return path


def dataset(data):
    return datasets.Dataset.from_dict(data, features=features())


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same table as a CSV file, a saved Dataset folder and a Parquet file."""
    root = tmp_path_factory.mktemp("hf")
    data = make_columns()
    write_csv(root / "table.csv", data)
    dataset(data).save_to_disk(str(root / "saved"))
    dataset(data).to_parquet(str(root / "table.parquet"))
    return root


def test_saved_dataset_and_parquet_give_the_csv_table(sources):
    csv_table = read_table(sources / "table.csv")
    for name in ("saved", "table.parquet"):
        table = read_hf_table(sources / name, DEFAULT_MISSING)
        assert table.columns == csv_table.columns == list(FEATURES)
        assert table.rows == csv_table.rows
        assert table.lines == [line - 1 for line in csv_table.lines] == list(range(1, 81))  # row N, as "line N"
        assert table.given == {}
    row = csv_table.rows[0]
    assert row[1] == "1.0" and row[2].isdigit() and row[4] in GRADES and row[5] == "True"  # float 1.0 stays "1.0"
    assert any(r[3] == "blue" for r in csv_table.rows) and not any(r[3] == "NA" for r in csv_table.rows)
    assert sum(r[4] is None for r in csv_table.rows) > 3  # ClassLabel -1 and null: missing
    schema = Schema.infer(csv_table, list(range(60)), drop=["id"])
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"size": "real", "count": "real", "colour": "categorical", "grade": "categorical",
                     "flag": "categorical"}
    assert schema.columns[2].categories == ["blue", "red"] and schema.columns[3].categories == sorted(GRADES)
    assert schema.columns[4].categories == ["False", "True"]


def last_weights(run):
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    assert checkpoint.name.endswith("-step-8")   # 2 epochs of 4 batches (64 training rows of 80, 16 a batch)
    return load_file(str(checkpoint / "model.safetensors"))


def test_saved_dataset_and_parquet_train_to_the_csv_weights(sources):
    runs = {}
    for name, data in [("csv", {"path": str(sources / "table.csv")}), ("saved", {"path": str(sources / "saved")}),
                       ("parquet", {"path": str(sources / "table.parquet"), "format": "hf"})]:
        root = sources / f"train-{name}"
        root.mkdir()
        runs[name] = train_table(root, {**data, "drop": ["id"]})
    schema = json.loads((runs["csv"] / "schema.json").read_text())
    weights = last_weights(runs["csv"])
    for name in ("saved", "parquet"):
        assert json.loads((runs[name] / "schema.json").read_text()) == schema
        other = last_weights(runs[name])
        assert other.keys() == weights.keys() and all(torch.equal(other[k], weights[k]) for k in weights)


def test_float32_and_a_missing_marker_read_as_a_csv_holds_them(tmp_path):
    values = datasets.Features({"x": datasets.Value("float32"), "n": datasets.Value("int32")})
    datasets.Dataset.from_dict({"x": [0.1, 1.0, float("nan"), 3e-7, None], "n": [1, -999, 3, None, 5]},
                               features=values).save_to_disk(str(tmp_path / "saved"))
    table = read_hf_table(tmp_path / "saved", ["", "-999"])
    assert table.rows == [["0.1", "1"], ["1.0", None], [None, "3"], ["3e-07", None], [None, "5"]]


def test_a_dataset_dict_brings_its_splits(tmp_path):
    data = make_columns(100, seed=3, complete=("id", "grade"))
    splits = {"train": (0, 70), "validation": (70, 80), "test": (80, 100)}
    whole = datasets.DatasetDict({split: dataset({name: values[a:b] for name, values in data.items()})
                                  for split, (a, b) in splits.items()})
    whole.save_to_disk(str(tmp_path / "dd"))
    write_csv(tmp_path / "table.csv", data)
    table = read_hf_table(tmp_path / "dd", DEFAULT_MISSING)
    assert table.rows == read_table(tmp_path / "table.csv").rows   # train, validation, test rows in order
    recipe = vaezoo.load_recipe(write_recipe(tmp_path / "r.toml", {"path": "dd", "drop": ["id"],
                                                                   "label_column": "grade"}))
    modality = TabularModality(recipe, tmp_path)
    rows = modality.split_rows()
    assert rows == {"train": list(range(70)), "validation": list(range(70, 80)), "test": list(range(80, 100))}
    # only a test split: validation is held out of the train rows by its fraction (0.1 of 70: 7 rows)
    datasets.DatasetDict({"train": whole["train"], "test": whole["test"]}).save_to_disk(str(tmp_path / "dt"))
    modality = TabularModality(vaezoo.load_recipe(write_recipe(tmp_path / "r.toml", {"path": "dt"})), tmp_path)
    rows = modality.split_rows()
    assert len(rows["validation"]) == 7 and sorted(rows["train"] + rows["validation"]) == list(range(70))
    assert rows["test"] == list(range(70, 90))
    # fitted on the training rows; the test split's rows and labels come through as given
    labelled = TabularModality(recipe, tmp_path)
    labelled.fit(tmp_path)
    assert labelled.label_names == sorted(GRADES)   # the ClassLabel's names
    test = labelled.dataset("test")
    assert len(test) == 20 and test[0]["cells"] == table.rows[80]
    assert [labelled.label_names[int(test[i]["label"])] for i in range(20)] == [GRADES[g] for g in data["grade"][80:]]


def test_columns_a_cell_cannot_hold_are_refused_unless_dropped(tmp_path):
    datasets.Dataset.from_dict({"a": [1.5, 2.5], "tags": [["x"], []]}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(InputError, match=r"data-00000-of-00001.arrow: column 'tags' is a List column; a table cell "
                                         r"is one number or string, so list the column in data.drop"):
        read_hf_table(tmp_path / "saved", DEFAULT_MISSING)
    table = read_hf_table(tmp_path / "saved", DEFAULT_MISSING, drop=["tags"])
    assert table.columns == ["a", "tags"] and table.rows == [["1.5", None], ["2.5", None]]  # dropped: cells missing
    # a Parquet file without Hugging Face metadata: its values decide, and the message names the row
    pa.parquet.write_table(pa.table({"a": [1, 2], "blob": [None, b"\x00"]}), str(tmp_path / "plain.parquet"))
    with pytest.raises(InputError, match=r"plain.parquet, row 2: column 'blob' holds bytes; a table cell"):
        read_hf_table(tmp_path / "plain.parquet", DEFAULT_MISSING)
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(InputError, match=r"broken.parquet: cannot read it"):
        read_hf_table(tmp_path / "broken.parquet", DEFAULT_MISSING)
    assert read_hf_table(tmp_path / "plain.parquet", DEFAULT_MISSING, drop=["blob"]).rows == [["1", None], ["2", None]]


@pytest.mark.parametrize("data, message", [
    ({"path": "saved"}, "column 'tags' is a List column; a table cell is one number or string"),
    ({"path": "broken.parquet"}, "broken.parquet: cannot read it"),
    ({"path": "table.csv", "format": "hf"}, "table.csv: data.format = 'hf' takes a saved dataset folder"),
    ({"path": "saved", "drop": ["tags"], "categorical": ["b"]}, "[data] categorical: no column 'b'"),
])
def test_train_on_bad_hugging_face_data_is_one_line_exit_2(tmp_path, data, message):
    datasets.Dataset.from_dict({"a": [1.5, 2.5, 3.0], "tags": [["x"], [], ["y"]]}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file")
    (tmp_path / "table.csv").write_text("a\n1\n2\n")
    recipe = write_recipe(tmp_path / "r.toml", data)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_commands_take_hugging_face_tables_as_inputs(sources):
    """`vaezoo reconstruct` / `score` / `impute` inputs: a saved Dataset or a Parquet file gives
    the batch its CSV gives; a missing path is one line, exit 2."""
    root = sources / "inputs"
    root.mkdir()
    run = train_table(root, {"path": str(sources / "table.csv"), "drop": ["id"]})
    modality = vaezoo.open_run(run, device="cpu").modality
    from_csv = modality.load_inputs([str(sources / "table.csv")])
    for name in ("saved", "table.parquet"):
        batch = modality.load_inputs([str(sources / name)])
        assert batch.keys() == from_csv.keys()
        assert torch.equal(batch["x"], from_csv["x"]) and torch.equal(batch["mask"], from_csv["mask"])
    both = modality.load_inputs([str(sources / "table.csv"), str(sources / "table.parquet")])
    assert len(both["x"]) == 160
    result = CliRunner().invoke(main, ["score", str(run), str(sources / "nowhere.parquet"), "--out",
                                       str(root / "scores.csv")])
    assert result.exit_code == 2 and "nowhere.parquet: not found" in result.output.strip().splitlines()[-1]
    assert not (root / "scores.csv").exists()
    result = CliRunner().invoke(main, ["score", str(run), str(sources / "table.parquet"), "--out",
                                       str(root / "scores.csv")])
    assert result.exit_code == 0, result.output
    assert len((root / "scores.csv").read_text().splitlines()) == 81
