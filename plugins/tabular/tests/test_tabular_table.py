"""CSV parsing and the column schema: missing markers, type inference, clear errors."""

import json

import pytest
import torch

from vaezoo import InputError
from vaezoo_tabular.columns import CATEGORICAL, REAL, Schema
from vaezoo_tabular.table import read_table


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_markers_and_spaces(tmp_path):
    path = write(tmp_path, "a,b,c\n1, x ,NA\n?,,2.5\n\n3,y,4\n")
    table = read_table(path)
    assert table.columns == ["a", "b", "c"]
    assert table.rows == [["1", "x", None], [None, None, "2.5"], ["3", "y", "4"]]
    assert table.lines == [2, 3, 5]  # the blank line 4 is skipped, line numbers stay the file's


def test_custom_markers(tmp_path):
    table = read_table(write(tmp_path, "a,b\n-999,1\n2,\n"), missing=["-999"])
    assert table.rows == [[None, "1"], ["2", ""]]


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("a,b\n", "no data rows"),
    ("a,a\n1,2\n", "line 1: column name 'a' appears twice"),
    ("a,,c\n1,2,3\n", "line 1: column 2 of the header has no name"),
    ("a,b\n1,2\n3\n", "line 3: 1 fields, the header (line 1) has 2"),
    ('a,b\n1,"2\n', "line 2: not valid CSV"),
])
def test_bad_files_name_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        read_table(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_not_utf8_and_absent(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("a,b\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_table(path)
    with pytest.raises(InputError, match="cannot read"):
        read_table(tmp_path / "absent.csv")


def test_schema_types_and_training_statistics(tmp_path):
    table = read_table(write(tmp_path, "age,sex,town\n20,1,b\n40,2,a\n,1,\n100,2,c\n"))
    schema = Schema.infer(table, train_rows=[0, 1, 2], categorical=["sex"])
    kinds = [(c.name, c.kind) for c in schema.columns]
    assert kinds == [("age", REAL), ("sex", CATEGORICAL), ("town", CATEGORICAL)]
    age = schema.columns[0]
    assert (age.mean, age.sd) == (30.0, 10.0)  # row 3 (age 100) is not a training row
    assert schema.columns[2].categories == ["a", "b", "c"]  # categories come from every row
    x, mask = schema.encode(table)
    assert mask.tolist() == [[1, 1, 1], [1, 1, 1], [0, 1, 0], [1, 1, 1]]
    assert x[:, 0].tolist() == [-1.0, 1.0, 0.0, 7.0]
    assert x[:, 2].tolist() == [1.0, 0.0, 0.0, 2.0]
    # JSON round trip, and back to text
    (tmp_path / "schema.json").write_text(json.dumps(schema.to_json()))
    again = Schema.from_json(tmp_path / "schema.json")
    assert again == schema
    assert again.cells(torch.tensor([[0.5, 1.0, 2.0]])) == [["35", "2", "c"]]


def test_schema_errors(tmp_path):
    table = read_table(write(tmp_path, "a,b\n1,x\n2,\n"))
    with pytest.raises(InputError, match="line 2: column 'b' is declared real but holds 'x'"):
        Schema.infer(table, [0, 1], real=["b"])
    with pytest.raises(InputError, match=r"\[data\] categorical: no column 'c'"):
        Schema.infer(table, [0, 1], categorical=["c"])
    with pytest.raises(InputError, match="no observed value in the training rows"):
        Schema.infer(read_table(write(tmp_path, "a,b\n,x\n2,y\n", "u.csv")), [0])
    schema = Schema.infer(table, [0, 1])
    other = read_table(write(tmp_path, "a,b\n1,z\n", "v.csv"))
    with pytest.raises(InputError, match="v.csv: line 2: column 'b': unknown category 'z' \\(known: x\\)"):
        schema.encode(other)
    with pytest.raises(InputError, match="line 1: no column 'b'"):
        schema.encode(read_table(write(tmp_path, "a\n1\n", "w.csv")))
