"""`vaezoo score`: ROC AUC arithmetic, label files, and far-away inputs scoring higher."""

import csv
import re
import json

import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from vaezoo.cli import main
from vaezoo.core.errors import InputError
from vaezoo.analysis.scoring import input_batches, read_labels, roc_auc
from tiny_modality import make_points


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_roc_auc_hand_cases():
    # 4 pairs (anomalous, normal): 0.35 > 0.1, 0.35 < 0.4, 0.8 > 0.1, 0.8 > 0.4 -> 3 of 4.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([5, 5, 5, 5], [0, 1, 0, 1]) == 0.5                       # ties count one half
    # One anomalous at 2 against normals 1, 2, 3: one win, one tie, one loss -> 1.5 / 3.
    assert roc_auc([1, 2, 3, 2], [0, 0, 0, 1]) == 0.5
    assert roc_auc([float("inf"), 1.0, 2.0], [1, 0, 0]) == 1.0
    assert roc_auc([float("-inf"), float("inf"), 2.0, float("inf")], [1, 0, 0, 1]) == 0.375  # 0 + 0 + 1/2 + 1 of 4


def test_roc_auc_matches_sklearn_with_many_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 7, (500,), generator=g).double()
    labels = torch.rand(500, generator=g) < 0.3
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)


def test_roc_auc_needs_both_kinds_of_input():
    with pytest.raises(ValueError, match="1 anomalous and 0 normal"):
        roc_auc([0.3], [1])
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        roc_auc([1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match="a score is NaN"):
        roc_auc([1.0, float("nan"), 3.0], [0, 1, 1])


@pytest.mark.parametrize("text, message", [
    ("name,value\na,1\n", "line 1: expected the header 'input,label'"),
    ("input,label\na,1\nb,yes\n", "line 3: expected INPUT,LABEL with LABEL 0 (normal) or 1 (anomalous)"),
    ("input,label\na,1\na,0\n", "line 3: input 'a' is labelled twice"),
])
def test_label_file_mistakes_name_the_line(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)):
        read_labels(path)


def as_input(row) -> str:
    return ",".join(f"{v:.5f}" for v in row.tolist())


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """The tiny model, trained on vectors near a ring (it sees nothing else)."""
    from tiny_modality import TINY_RECIPE

    root = tmp_path_factory.mktemp("score")
    (root / "tiny.toml").write_text(TINY_RECIPE.replace("epochs = 3", "epochs = 8"))
    assert cli("train", root / "tiny.toml", "--run-dir", root / "run", "--no-progress").exit_code == 0
    return root / "run"


@pytest.mark.parametrize("k", [0, 10])
def test_inputs_far_from_the_training_data_score_higher(ring_run, tmp_path, k):
    near = make_points(6, 6, 0.05, seed=9)                     # new draws from the training distribution
    far = near * 4 + 3                                           # same shape, far off the ring
    inputs = [as_input(r) for r in near] + [as_input(r) for r in far]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([("input", "label")] + [(x, int(i >= 6)) for i, x in enumerate(inputs)])
    out = tmp_path / "scores.csv"
    # "--" ends the options: inputs may start with a minus sign.
    result = cli("score", ring_run, "-k", k, "--labels", labels, "--out", out, "--", *inputs)
    assert result.exit_code == 0, result.output
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == inputs
    scores = [float(r["score"]) for r in rows]
    assert min(scores[6:]) > max(scores[:6])
    summary = json.loads((tmp_path / "scores.json").read_text())
    assert summary["roc_auc"] == 1.0 and summary["anomalous"] == 6 and summary["k"] == k
    assert "ROC AUC 1.0000 (6 anomalous, 6 normal)" in result.output


def test_score_a_split_and_the_iw_score_is_at_most_the_elbo_score(ring_run, tmp_path):
    files = {}
    for k in (0, 50):
        files[k] = tmp_path / f"k{k}.csv"
        result = cli("score", ring_run, "--split", "validation", "--max-examples", 10, "-k", k, "--out", files[k])
        assert result.exit_code == 0, result.output
    rows = {k: list(csv.DictReader(path.open(newline=""))) for k, path in files.items()}
    assert [r["input"] for r in rows[0]] == [f"validation:{i}" for i in range(10)]
    # -log p(x) by importance weighting is below -ELBO on average (the IW bound is tighter).
    mean = {k: sum(float(r["score"]) for r in v) / 10 for k, v in rows.items()}
    assert mean[50] < mean[0]


def test_score_mistakes_are_one_line(ring_run, tmp_path):
    result = cli("score", ring_run, "1,2,3,4,5,6", "--labels", tmp_path / "missing.csv")
    assert result.exit_code == 2 and "missing.csv: label file not found" in result.output
    labels = tmp_path / "labels.csv"
    labels.write_text("input,label\n1,2,3,4,5,6,1\n")
    result = cli("score", ring_run, "0,0,0,0,0,0", "--labels", labels)
    assert result.exit_code == 2 and "line 2" in result.output
    labels.write_text('input,label\n"0,0,0,0,0,0",1\n')
    result = cli("score", ring_run, "0,0,0,0,0,0", "1,1,1,1,1,1", "--labels", labels)
    assert result.exit_code == 2 and "no label for input '1,1,1,1,1,1'" in result.output
    result = cli("score", ring_run, "0,0,0,0,0,0", "--labels", labels)
    assert result.exit_code == 2 and "needs anomalous and normal inputs" in result.output
    assert "Traceback" not in result.output


class RowsPerItem:
    """A stand-in modality whose inputs are "NAME=ROWS": load_inputs gives ROWS rows per item."""

    name = "rows"

    def __init__(self):
        self.calls = []

    def load_inputs(self, items):
        self.calls.append(list(items))
        values = [float(len(self.calls) * 100 + i) for i, item in enumerate(items) for _ in range(int(item.split("=")[1]))]
        return {"x": torch.tensor(values).unsqueeze(1)}


def test_one_row_per_item_keeps_the_names_and_loads_each_chunk_once():
    modality, names = RowsPerItem(), []
    batches = list(input_batches(modality, [f"i{n}=1" for n in range(5)], 2, names))
    assert names == [f"i{n}=1" for n in range(5)]
    assert [len(b["x"]) for b in batches] == [2, 2, 1]
    assert modality.calls == [["i0=1", "i1=1"], ["i2=1", "i3=1"], ["i4=1"]]  # batched, never item by item


def test_items_with_several_rows_are_named_item_index():
    modality, names = RowsPerItem(), []
    batches = list(input_batches(modality, ["a=3", "b=1", "c=2"], 4, names))
    assert names == ["a=3:0", "a=3:1", "a=3:2", "b=1", "c=2:0", "c=2:1"]
    # the combined batch is scored (in pieces of at most 4 rows); items were loaded alone only to count
    assert [len(b["x"]) for b in batches] == [4, 2]
    assert modality.calls == [["a=3", "b=1", "c=2"], ["a=3"], ["b=1"], ["c=2"]]
    with pytest.raises(InputError, match="e=0: holds nothing to score"):
        list(input_batches(RowsPerItem(), ["d=3", "e=0"], 4, []))
