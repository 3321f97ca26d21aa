"""[data] label_column: one column becomes the batches' integer "label" (not modelled), with its names."""

import json

import pytest
from click.testing import CliRunner

import vaezoo
import vaezoo_tabular
from vaezoo.cli import main
from vaezoo_tabular.table import read_table

from test_tabular_cli import FAST, train_table, write_csv, write_recipe

KINDS = ["oak", "elm", "ash"]  # sorted: ash, elm, oak


def write_labelled(path, n=80, kinds=KINDS):
    """write_csv's table plus a last column "kind" (never missing), row i -> kinds[i % len(kinds)]."""
    write_csv(path, n=n)
    lines = path.read_text().splitlines()
    lines = [lines[0] + ",kind"] + [f"{line},{kinds[i % len(kinds)]}" for i, line in enumerate(lines[1:])]
    path.write_text("\n".join(lines) + "\n")
    return path


LABELLED = {"path": "table.csv", "categorical": ["grade"], "drop": ["id"], "label_column": "kind"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    table = write_labelled(root / "table.csv")
    train_table(root, LABELLED)
    return root, table


def test_schema_keeps_the_classes_and_not_the_label_column(labelled):
    root, _ = labelled
    schema = json.loads((root / "run" / "schema.json").read_text())
    assert [c["name"] for c in schema["columns"]] == ["size", "colour", "weight", "grade"]
    assert schema["label"] == {"column": "kind", "classes": ["ash", "elm", "oak"]}


def test_batches_carry_each_rows_label_and_the_reopened_run_names_them(labelled):
    root, table = labelled
    run = vaezoo.open_run(root / "run", device="cpu")
    assert run.modality.label_names == ["ash", "elm", "oak"]
    cells = read_table(table)
    rows = run.modality.split_rows()
    for split in ("train", "validation", "test"):
        data = run.modality.dataset(split)
        batch = data.__getitems__(list(range(len(data))))
        assert str(batch["label"].dtype) == "torch.int64" and batch["label"].shape == (len(rows[split]),)
        names = [run.modality.label_names[k] for k in batch["label"].tolist()]
        assert names == [cells.rows[i][-1] for i in rows[split]]
        # item by item through collate: the same labels
        items = run.modality.collate([data[i] for i in range(len(data))])
        assert items["label"].tolist() == batch["label"].tolist()
        # the encoder's x has the four modelled columns only
        assert batch["x"].shape == (len(rows[split]), 4)


def test_reconstruct_passes_the_label_column_through_and_samples_lack_it(labelled, tmp_path):
    root, table = labelled
    result = CliRunner().invoke(main, ["reconstruct", str(root / "run"), str(table), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    before, after = read_table(table), read_table(tmp_path / "reconstructions.csv")
    assert after.columns == before.columns
    assert [row[-1] for row in after.rows] == [row[-1] for row in before.rows]  # untouched, like a dropped column
    result = CliRunner().invoke(main, ["sample", str(root / "run"), "--n", "5", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    written = list((tmp_path / "s").glob("*.csv"))
    assert written and all(read_table(p).columns == ["size", "colour", "weight", "grade"] for p in written)


def test_latent_map_names_the_classes(labelled, tmp_path):
    root, table = labelled
    result = CliRunner().invoke(main, ["latent-map", str(root / "run"), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "vs labels: adjusted Rand index" in result.output
    summary = json.loads((tmp_path / "test-pca.json").read_text())
    assert summary["label_names"] == ["ash", "elm", "oak"] and summary["color_by"] == "label"
    run = vaezoo.open_run(root / "run", device="cpu")
    test_rows = run.modality.split_rows()["test"]
    plotted = [line.split(",")[2] for line in (tmp_path / "test-pca.csv").read_text().splitlines()[1:]]
    cells = read_table(table)
    assert [summary["label_names"][int(k)] for k in plotted] == [cells.rows[i][-1] for i in test_rows]


def test_without_label_column_batches_have_no_label(tmp_path):
    write_labelled(tmp_path / "table.csv")
    data = {k: v for k, v in LABELLED.items() if k != "label_column"}
    recipe = vaezoo.load_recipe(write_recipe(tmp_path / "r.toml", data))
    assert recipe.data.label_column is None
    modality = vaezoo_tabular.TabularModality(recipe, tmp_path)
    modality.fit(tmp_path)
    assert "label" not in json.loads((tmp_path / "schema.json").read_text())
    assert modality.label_names is None
    split = modality.dataset("train")
    assert "label" not in split[0] and "label" not in split.__getitems__([0, 1])
    assert "label" not in modality.collate([split[0], split[1]])
    # "kind" is then an ordinary categorical column, modelled
    assert [c.name for c in modality.schema().columns][-1] == "kind"


def _unknown_in_test_split(path):
    """A table whose one test row holds a class no other row has."""
    write_labelled(path)
    recipe = vaezoo.load_recipe(write_recipe(path.parent / "probe.toml", LABELLED))
    row = vaezoo_tabular.TabularModality(recipe, path.parent).split_rows()["test"][0]
    lines = path.read_text().splitlines()
    lines[row + 1] = lines[row + 1].rsplit(",", 1)[0] + ",yew"
    path.write_text("\n".join(lines) + "\n")
    return f"line {row + 2}: label column 'kind' holds 'yew', which no training row has (known classes: ash, elm, oak)"


def _missing_cell(path):
    write_labelled(path)
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",NA"
    path.write_text("\n".join(lines) + "\n")
    return "table.csv: line 6: label column 'kind' is missing; every row needs a label"


@pytest.mark.parametrize("case", ["no such column", "also dropped", "also categorical", "missing cell", "unknown class"])
def test_label_errors_are_one_line_exit_2(tmp_path, case):
    table = tmp_path / "table.csv"
    data = dict(LABELLED)
    if case == "no such column":
        write_labelled(table)
        data["label_column"] = "species"
        message = ("[data] label_column: no column 'species' in the header "
                   "(columns: id, size, colour, weight, grade, kind)")
    elif case == "also dropped":
        write_labelled(table)
        data["drop"] = ["id", "kind"]
        message = "label_column 'kind' is also listed in drop"
    elif case == "also categorical":
        write_labelled(table)
        data["categorical"] = ["grade", "kind"]
        message = "label_column 'kind' is also listed in categorical"
    elif case == "missing cell":
        message = _missing_cell(table)
    else:
        message = _unknown_in_test_split(table)
    recipe = write_recipe(tmp_path / "r.toml", data)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # beside "run directory: ..."
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def test_a_conditional_table_model_trains_imputes_and_samples_by_class(tmp_path):
    """[condition] on tabular data: the label column becomes the condition; tables given on the
    command line with that column keep each row's class, and --as imputes as another class."""
    table = write_labelled(tmp_path / "table.csv")
    train_table(tmp_path, LABELLED, condition={"enabled": True})
    runner = CliRunner()
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("prior*")) == \
        ["prior-class0-ash.csv", "prior-class1-elm.csv", "prior-class2-oak.csv"]
    result = runner.invoke(main, ["reconstruct", str(tmp_path / "run"), str(table), "--out", str(tmp_path / "own")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["reconstruct", str(tmp_path / "run"), str(table), "--as", "oak",
                                  "--out", str(tmp_path / "as")])
    assert result.exit_code == 0, result.output
    own, swapped = read_table(tmp_path / "own" / "reconstructions.csv"), read_table(tmp_path / "as" / "reconstructions-as-class2-oak.csv")
    source = read_table(table)
    missing = [(i, j) for i, row in enumerate(source.rows) for j, cell in enumerate(row) if cell is None]
    assert missing and any(own.rows[i][j] != swapped.rows[i][j] for i, j in missing)
    observed = [(i, j) for i, row in enumerate(source.rows) for j, cell in enumerate(row) if cell is not None]
    assert all(own.rows[i][j] == swapped.rows[i][j] == source.rows[i][j] for i, j in observed)
    run = vaezoo.open_run(tmp_path / "run", device="cpu")
    batch = run.modality.load_inputs([str(table)])
    assert batch["label"].tolist() == [["ash", "elm", "oak"].index(row[-1]) for row in source.rows]
    # the decoder exports (z, class) -> the decoded table; the encoder reads the mask too: refused
    result = runner.invoke(main, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    import torch

    decoder = torch.jit.load(str(tmp_path / "export" / "decoder.pt"))
    z, c = torch.randn(5, run.vae.latent_dim), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        assert (decoder(z, c) - run.vae.decode(z, c).mean).abs().max() <= 1e-4
    # the encoder reads the mask too: exported as (x, mask, c) -> (mean, logvar)
    result = runner.invoke(main, ["export", str(tmp_path / "run"), "--part", "encoder", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "e" / "export.json").read_text())
    assert [i["name"] for i in info["parts"]["encoder"]["inputs"]] == ["x", "mask", "c"]
    assert (tmp_path / "e" / "schema.json").exists()          # the plugin's fitted state, beside
    encoder = torch.jit.load(str(tmp_path / "e" / "encoder.pt"))
    with torch.no_grad():
        mean, logvar = encoder(batch["x"], batch["mask"], batch["label"])
        q = run.vae.encode(batch)
    assert (mean - q.mean).abs().max() <= 1e-4 and (logvar - q.logvar).abs().max() <= 1e-4
