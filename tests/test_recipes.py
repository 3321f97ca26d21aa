"""Recipe validation: every kind of mistake gives exit code 2 and one clear message per mistake."""

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from tiny_modality import TINY_RECIPE
from vaezoo.cli import main
from vaezoo.config.recipe import TrainConfig
from vaezoo.plugin.recipes import load_recipe


def run_train(recipe_path: Path, *extra: str):
    result = CliRunner().invoke(main, ["train", str(recipe_path), "--run-dir", str(recipe_path.parent / "run"), *extra])
    return result


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("[train]", "[train\n"), "not valid TOML"),
        (lambda t: t.replace("epochs = 3", "epocs = 3"), "[train] epocs: unknown key (did you mean 'epochs'?)"),
        (lambda t: t.replace("lr = 0.01", "lr = \"fast\""), "[train] lr: expected a number, got 'fast'"),
        (lambda t: t.replace("epochs = 3", "epochs = 2.5"), "[train] epochs: expected an integer, got 2.5"),
        (lambda t: t.replace("lr = 0.01", "lr = -1.0"), "[train] lr: must be > 0.0, got -1.0"),
        (lambda t: t.replace("batch_size = 16", "batch_size = 0"), "[train] batch_size: must be >= 1, got 0"),
        (lambda t: t.replace('kl_schedule = "linear"', 'kl_schedule = "sigmoid"'),
         "[objective] kl_schedule: expected one of 'constant', 'linear', 'cyclical', 'logistic', got 'sigmoid'"),
        (lambda t: t.replace("n = 128", "n = 128\ncsv = \"no/such/file.csv\""), "[data] csv: path does not exist:"),
        (lambda t: t.replace('modality = "tiny_modality:TinyVectors"', 'modality = "imgae"'), "modality: unknown modality 'imgae'"),
        (lambda t: t.replace("[latent]", "[laten]"), "laten: unknown key (did you mean 'latent'?)"),
        (lambda t: t.replace("[objective]", "[objective]\nkind = \"iwae\"\nfree_bits = 0.5"), "free_bits works with kind = 'elbo' only"),
    ],
    ids=["syntax", "unknown-key", "wrong-type", "int-not-float", "range-gt", "range-min", "choice",
         "missing-path", "unknown-modality", "unknown-section", "cross-field"],
)
def test_recipe_errors_exit_2_with_one_clear_message(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(TINY_RECIPE))
    result = run_train(path)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert str(path) in result.output          # names the file
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1
    assert not (tmp_path / "run").exists()     # nothing was created


def test_missing_recipe_file_and_bad_override(tmp_path):
    result = CliRunner().invoke(main, ["train", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "nope.toml: file not found" in result.output
    path = tmp_path / "ok.toml"
    path.write_text(TINY_RECIPE)
    result = run_train(path, "--set", "train.lr")
    assert result.exit_code == 2 and "expected section.key=value" in result.output
    result = run_train(path, "--set", "train.lr=-3")
    assert result.exit_code == 2 and "[train] lr: must be > 0.0, got -3" in result.output


def test_overrides_and_defaults(tmp_path, monkeypatch):
    path = tmp_path / "ok.toml"
    path.write_text(TINY_RECIPE.replace("n = 128", 'n = 128\ncsv = "sub/v.csv"'))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "v.csv").write_text("1,2,3,4,5,6\n")
    recipe = load_recipe(path, ["train.lr=3e-4", "objective.beta=0.5", "eval.split=validation"])
    assert recipe.train.lr == 3e-4 and recipe.objective.beta == 0.5 and recipe.eval.split == "validation"
    assert recipe.data.csv == (tmp_path / "sub" / "v.csv").resolve()   # relative to the recipe file
    assert recipe.train.grad_clip == 0.0 and recipe.latent.dim == 2     # defaults and file values
    # From --set, relative paths are taken from the shell's folder.
    monkeypatch.chdir(tmp_path / "sub")
    recipe = load_recipe(path, ["data.csv=v.csv"])
    assert recipe.data.csv == (tmp_path / "sub" / "v.csv").resolve()
    # The resolved recipe round-trips through TOML.
    again = tmp_path / "again.toml"
    again.write_text(recipe.to_toml())
    assert load_recipe(again).to_dict() == recipe.to_dict()


def test_recipes_command_lists_and_shows(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tiny.toml").write_text(TINY_RECIPE)
    monkeypatch.setenv("VAEZOO_RECIPES", str(folder))
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0 and "tiny" in result.output
    result = CliRunner().invoke(main, ["recipes", "tiny"])
    assert result.exit_code == 0 and result.output == TINY_RECIPE
    result = CliRunner().invoke(main, ["recipes", "tinny"])
    assert result.exit_code == 2 and "did you mean 'tiny'" in result.output


def test_plugins_ship_recipes_that_names_find_after_the_users_own(tmp_path, monkeypatch):
    import sys

    from vaezoo.plugin import registry as plugins
    from vaezoo.plugin.recipes import list_recipes, resolve_recipe_path

    # A plugin module whose class ships recipes/ beside it, as an installed plugin would.
    package = tmp_path / "shipping_plugin"
    (package / "recipes").mkdir(parents=True)
    (package / "__init__.py").write_text("class Shipping:\n    recipe_folder = 'recipes'\n")
    for name in ("shared", "only-in-plugin"):
        (package / "recipes" / f"{name}.toml").write_text(TINY_RECIPE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import shipping_plugin

    info = plugins.PluginInfo("shipping", "shipping_plugin:Shipping", None, None, 1, None, "ok", modality=shipping_plugin.Shipping)
    monkeypatch.setattr(plugins, "discover", lambda: {"shipping": info})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "shared.toml").write_text(TINY_RECIPE)
    monkeypatch.setenv("VAEZOO_RECIPES", str(mine))

    assert plugins.recipe_folders() == [(package / "recipes").resolve()]
    found = list_recipes()
    assert found["shared"] == mine / "shared.toml"                                  # the user's folder wins
    assert found["only-in-plugin"] == (package / "recipes" / "only-in-plugin.toml").resolve()
    assert resolve_recipe_path("only-in-plugin") == found["only-in-plugin"]
    assert "only-in-plugin" not in list_recipes(plugins=False)
    sys.modules.pop("shipping_plugin")


@pytest.mark.parametrize("command", ["train", "sample", "reconstruct", "interpolate", "eval", "encode", "plugins", "recipes"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and len(result.output.splitlines()) > 4


def test_a_recipe_with_several_mistakes_reports_them_all(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        TINY_RECIPE.replace("seed = 3", "seed = -1\ncolour = 3")
        .replace("dim = 2", "dim = 0")
        .replace("epochs = 3", "epocs = 3")
        .replace("lr = 0.01", 'lr = "fast"')
        .replace("dim = 6", "dim = 1")
    )
    result = run_train(path, "--set", "eval.iw_samples=-2")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"error: {path}: colour: unknown key; allowed: modality, name, seed, latent, prior, posterior, objective, adversarial, condition, train, eval, data, model",
        f"error: {path}: seed: expected an integer >= 0, got -1",
        f"error: {path}: [latent] dim: must be >= 1, got 0",
        f"error: {path}: [train] epocs: unknown key (did you mean 'epochs'?); allowed: "
        + ", ".join(f.name for f in dataclasses.fields(TrainConfig)),
        f"error: {path}: [train] lr: expected a number, got 'fast'",
        "error: --set: [eval] iw_samples: must be >= 0, got -2",
        f"error: {path}: [data] dim: must be >= 2, got 1",
    ]
    assert not (tmp_path / "run").exists()


def test_an_unknown_modality_is_reported_with_the_core_mistakes(tmp_path):
    """Without the plugin its sections are unknown, but the core's keys are still checked."""
    path = tmp_path / "bad.toml"
    path.write_text(TINY_RECIPE.replace('"tiny_modality:TinyVectors"', '"imgae"').replace("batch_size = 16", "batch_size = 0"))
    result = run_train(path)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {path}: modality: unknown modality 'imgae' (did you mean 'image'?); installed: ")
    assert lines[1] == f"error: {path}: [train] batch_size: must be >= 1, got 0"


def test_one_error_holds_every_problem():
    from vaezoo.core.errors import RecipeError
    from vaezoo.config.recipe import parse_recipe

    with pytest.raises(RecipeError) as caught:
        parse_recipe({"modality": "m", "latent": {"dim": "x"}, "eval": {"split": "dev", "bogus": 1}},
                     plugin_sections={}, source="r.toml", base_dir=Path("."))
    err = caught.value
    assert [(p.source, p.key) for p in err.problems] == [("r.toml", "[latent] dim"), ("r.toml", "[eval] bogus"),
                                                        ("r.toml", "[eval] split")]
    assert str(err).splitlines() == [str(p) for p in err.problems] and err.exit_code == 2
    assert RecipeError.combine([err.problems[0]]) is err.problems[0]
