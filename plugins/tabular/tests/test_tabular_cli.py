"""End to end through the command line: train on a CSV, impute a CSV, and the one-line errors."""

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomli_w
import torch
from click.testing import CliRunner

import vaezoo
import vaezoo_tabular
from vaezoo.cli import main
from vaezoo_tabular import impute
from vaezoo_tabular.table import read_table

FAST = ["--no-progress", "--set", "train.tensorboard=false", "--set", "eval.iw_samples=4", "--set", "train.samples=4"]


def write_csv(path, n=80, seed=0, missing=0.15):
    """A table whose columns depend on each other, with markers for missing cells."""
    rng = random.Random(seed)
    lines = ["id,size,colour,weight,grade"]
    for i in range(n):
        size = rng.gauss(0, 1)
        colour = "red" if size > 0 else "blue"
        cells = [f"{size:.3f}", colour, f"{2 * size + rng.gauss(0, 0.3):.3f}", str(rng.choice([1, 2, 3]))]
        cells = [rng.choice(["", "NA", "?"]) if rng.random() < missing else c for c in cells]
        lines.append(",".join([f"r{i}"] + cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_recipe(path, data, **sections):
    recipe = {"modality": "tabular", "name": "t", "seed": 0, "latent": {"dim": 2},
              "train": {"epochs": 2, "batch_size": 16}, "data": data, "model": {"hidden": [16]}, **sections}
    path.write_text(tomli_w.dumps(recipe))
    return path


def train_table(root, data, **sections):
    """Write the recipe for ``data`` in ``root`` and train it into ``root/run``; returns the run."""
    recipe = write_recipe(root / "r.toml", data, **sections)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(root / "run"), *FAST])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tabular")
    table = write_csv(root / "table.csv")
    train_table(root, {"path": "table.csv", "categorical": ["grade"], "drop": ["id"]})
    return root, table


def test_train_saves_json_schema_fitted_on_training_rows(trained):
    root, _ = trained
    schema = json.loads((root / "run" / "schema.json").read_text())
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds == {"size": "real", "colour": "categorical", "weight": "real", "grade": "categorical"}
    assert [c["categories"] for c in schema["columns"] if c["name"] == "grade"] == [["1", "2", "3"]]
    assert not list((root / "run").rglob("*.p*kl*")) and not list((root / "run").rglob("*.pt"))
    assert json.loads((root / "run" / "eval.json").read_text())["elbo"] < 0


def test_reconstruct_writes_imputed_csv_keeping_observed_cells(trained, tmp_path):
    root, table = trained
    result = CliRunner().invoke(main, ["reconstruct", str(root / "run"), str(table), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    before = read_table(table)
    after = read_table(tmp_path / "reconstructions.csv")
    assert after.columns == before.columns and len(after.rows) == len(before.rows) == 80
    filled = 0
    for old, new in zip(before.rows, after.rows):
        for name, a, b in zip(before.columns, old, new):
            if a is not None:
                assert b == a  # observed cells: the file's own text, untouched
            elif name != "id":
                assert b is not None
                filled += 1
        assert math.isfinite(float(new[1]))  # every cell filled with a number
        assert new[2] in {"red", "blue"}
        assert new[4] in {"1", "2", "3"}
    assert filled > 20


def test_impute_function_averages_posterior_draws(trained):
    root, table = trained
    run = vaezoo.open_run(root / "run", device="cpu")
    a, b = impute(run, table, draws=8, seed=1), impute(run, table, draws=8, seed=1)
    assert a.rows == b.rows  # seeded
    source = read_table(table)
    hidden = [(i, j) for i, row in enumerate(source.rows) for j, c in enumerate(row) if c is None and j in (1, 3)]
    assert all(a.rows[i][j] == source.rows[i][j] for i, row in enumerate(source.rows)
               for j, c in enumerate(row) if c is not None)
    mean = impute(run, table, draws=0)
    # averaging draws moves the real predictions away from the decoded posterior mean
    assert any(a.rows[i][j] != mean.rows[i][j] for i, j in hidden)
    assert torch.isfinite(torch.tensor([float(a.rows[i][j]) for i, j in hidden])).all()


def test_impute_refuses_a_run_of_another_modality(tmp_path):
    # Not an AttributeError about .schema from deep inside: one line naming the run and its modality.
    other = SimpleNamespace(path=tmp_path / "run", modality=SimpleNamespace(name="image"), device="cpu")
    with pytest.raises(vaezoo.InputError, match="run of the 'image' modality; impute needs a tabular one"):
        impute(other, write_csv(tmp_path / "t.csv"))


def test_importance_weighting(trained):
    root, table = trained
    run = vaezoo.open_run(root / "run", device="cpu")
    batch = run.modality.load_inputs([str(table)])
    def guess(draws, weighting):
        torch.manual_seed(3)
        return vaezoo_tabular.predict(run.vae, batch, draws, weighting)
    # one draw has weight 1 whatever its importance; with several, the weights matter
    torch.testing.assert_close(guess(1, "importance"), guess(1, "uniform"))
    assert not torch.allclose(guess(6, "importance"), guess(6, "uniform"))
    with pytest.raises(ValueError, match="weighting must be"):
        guess(2, "softmax")


@pytest.mark.parametrize("text, message", [
    ("id,size,colour,weight,grade\nr1,1.0,red,2.0\n", "bad.csv: line 2: 4 fields, the header (line 1) has 5"),
    ("id,size,colour,weight,grade\nr1,big,red,2.0,1\n", "bad.csv: line 2: column 'size' is real but holds 'big'"),
    ("id,size,colour,weight,grade\nr1,1,green,2.0,1\n", "bad.csv: line 2: column 'colour': unknown category 'green'"),
    ("id,size,weight,grade\nr1,1,2.0,1\n", "bad.csv: line 1: no column 'colour'"),
])
def test_bad_input_is_one_line_exit_2(trained, tmp_path, text, message):
    root, _ = trained
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    result = CliRunner().invoke(main, ["reconstruct", str(root / "run"), str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1 and "Traceback" not in result.output


def test_recipe_errors_are_one_line(tmp_path):
    write_csv(tmp_path / "table.csv")
    bad_column = write_recipe(tmp_path / "a.toml", {"path": "table.csv", "categorical": ["colour", "shape"]})
    bad_split = write_recipe(tmp_path / "b.toml", {"path": "table.csv", "validation_fraction": 0.5, "test_fraction": 0.5})
    for recipe, message in [(bad_column, "[data] categorical: no column 'shape'"),
                            (bad_split, "[data]: validation_fraction + test_fraction must leave rows")]:
        result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), *FAST])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_row_split_is_seeded_disjoint_and_zero_means_training_rows(tmp_path):
    write_csv(tmp_path / "table.csv", n=100)
    def splits(**data):
        recipe = vaezoo.load_recipe(write_recipe(tmp_path / "s.toml", {"path": "table.csv", **data}))
        return vaezoo_tabular.TabularModality(recipe, tmp_path).split_rows()
    a = splits(validation_fraction=0.2, test_fraction=0.1)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [70, 20, 10]
    assert sorted(a["train"] + a["validation"] + a["test"]) == list(range(100))
    assert splits(validation_fraction=0.2, test_fraction=0.1) == a
    assert splits(validation_fraction=0.2, test_fraction=0.1, split_seed=1) != a
    whole = splits(validation_fraction=0.0, test_fraction=0.0)
    assert whole["train"] == whole["validation"] == whole["test"] == list(range(100))


def test_protocol_check_on_the_shipped_example():
    report = vaezoo.check_plugin("tabular", ["data.validation_fraction=0.2"], batch_size=5)
    assert report.distribution == "vaezoo-tabular" and report.latent_dim == 2
    # the example recipe's table (health.csv: 7 columns) through fit, with the mask in the batch
    assert report.batch["x"] == report.batch["mask"] == "[5, 7] float32"


def test_shipped_recipe_is_listed_and_trains_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./recipes here: the name must come from the plugin's recipe_folder
    recipe = Path(vaezoo_tabular.__file__).parent / "recipes" / "tabular-health.toml"
    listing = CliRunner().invoke(main, ["recipes"])
    assert listing.exit_code == 0 and f"tabular-health               {recipe}" in listing.output
    result = CliRunner().invoke(main, ["train", "tabular-health", "--run-dir", str(tmp_path / "run"), *FAST,
                                       "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "recipe.toml").read_text().count('name = "tabular-health"') == 1
    assert read_table(tmp_path / "run" / "samples" / "reconstructions.csv").columns[:2] == ["age", "sex"]


def test_score_gives_every_row_of_a_table_its_own_score_and_name(trained, tmp_path):
    # A table of five rows, the middle one far off the training data (weight is about 2 * size
    # there), and a table of one row: five names FILE:INDEX, then one plain name.
    root, _ = trained
    rows = ["r0,0.10,red,0.25,1", "r1,-0.50,blue,-1.10,2", "r2,3.00,red,-20.00,2", "r3,0.80,red,1.50,3",
            "r4,-1.20,blue,-2.30,1"]
    several = tmp_path / "several.csv"
    several.write_text("id,size,colour,weight,grade\n" + "\n".join(rows) + "\n")
    one = tmp_path / "one.csv"
    one.write_text("id,size,colour,weight,grade\nr9,0.20,red,0.35,2\n")
    names = [f"{several}:{i}" for i in range(5)] + [str(one)]
    labels = tmp_path / "labels.csv"
    labels.write_text("input,label\n" + "".join(f"{n},{int(i == 2)}\n" for i, n in enumerate(names)))
    # eval.batch_size=4: the five rows are scored in two batches, still one score each
    for batch in ("100", "4"):
        out = tmp_path / f"scores-{batch}.csv"
        result = CliRunner().invoke(main, ["score", str(root / "run"), str(several), str(one), "--labels", str(labels),
                                           "--out", str(out), "--no-progress", "--set", f"eval.batch_size={batch}"])
        assert result.exit_code == 0, result.output
        assert "scored 6 rows of 2 inputs by -ELBO" in result.output
        scored = [line.split(",") for line in out.read_text().splitlines()[1:]]
        assert [name for name, _ in scored] == names
        scores = [float(s) for _, s in scored]
        assert scores.index(max(scores)) == 2  # row 2 of the table, where it was put
        assert json.loads(out.with_suffix(".json").read_text())["roc_auc"] == 1.0
        assert "ROC AUC 1.0000 (1 anomalous, 5 normal)" in result.output


def test_score_labels_must_name_the_rows_of_a_table(trained, tmp_path):
    root, table = trained
    labels = tmp_path / "labels.csv"
    labels.write_text(f"input,label\n{table},1\n")   # the file, not its rows
    result = CliRunner().invoke(main, ["score", str(root / "run"), str(table), "--labels", str(labels), "--no-progress"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"{labels}: no label for input '{table}:0' (and 79 more); every scored input needs a row" in result.output
    labels.write_text("input,label\nother.csv,1\n")  # nothing for the table at all: refused before scoring
    result = CliRunner().invoke(main, ["score", str(root / "run"), str(table), "--labels", str(labels), "--no-progress"])
    assert result.exit_code == 2 and f"no label for input '{table}'" in result.output


def test_traverse_writes_the_rows_of_each_dimension(trained, tmp_path):
    root, _ = trained
    result = CliRunner().invoke(main, ["traverse", str(root / "run"), "--steps", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = read_table(tmp_path / "traversal-zeros.csv")
    assert len(rows.rows) == 2 * 3 and rows.columns == ["size", "colour", "weight", "grade"]


def test_an_iaf_posterior_and_a_mixture_prior_train_and_impute(tmp_path):
    """Importance-weighted imputation uses the run's own prior and posterior densities."""
    table = write_csv(tmp_path / "table.csv")
    recipe = write_recipe(tmp_path / "r.toml", {"path": "table.csv", "categorical": ["grade"], "drop": ["id"]},
                          prior={"kind": "mog", "components": 3}, posterior={"kind": "iaf"})
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 0, result.output
    run = vaezoo.open_run(tmp_path / "run", device="cpu")
    filled = impute(run, table, draws=8, seed=1)
    assert all(cell is not None for row in filled.rows for cell in row)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "vamp"), *FAST,
                                       "--set", "prior.kind=vamp"])
    assert result.exit_code == 2 and "'vamp' needs pseudo-inputs" in result.output


def test_the_adversarial_stage_is_refused_with_one_line(tmp_path):
    """Rows of mixed columns are not image-like: the generic discriminators do not apply."""
    table = write_csv(tmp_path / "table.csv")
    recipe = write_recipe(tmp_path / "r.toml", {"path": "table.csv", "categorical": ["grade"], "drop": ["id"]},
                          adversarial={"enabled": True})
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "gan"), *FAST])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the tabular modality's inputs x are float32 tensors of shape [N," in errors[0]
    assert table.exists() and not (tmp_path / "gan").exists()
