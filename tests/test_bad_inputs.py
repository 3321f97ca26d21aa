"""Bad inputs of every class: one line, exit 2, and every file of an existing run as it was.

Each test names the class of mistake it covers; `digest` hashes every file of a run
directory (recursively), so "nothing damaged" is checked byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from tiny_modality import TINY_RECIPE
from vaezoo.train.checkpoints import latest_weights
from vaezoo.cli import main
from vaezoo.core.errors import RecipeError
from vaezoo.plugin.recipes import load_recipe


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result, *fragments: str) -> None:
    """Exit 2 with one `error:` line holding every fragment, and no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE.replace("epochs = 3", "epochs = 1"))
    return path


@pytest.fixture
def run(recipe, tmp_path) -> Path:
    run = tmp_path / "run"
    result = cli("train", recipe, "--run-dir", run, "--no-progress")
    assert result.exit_code == 0, result.output
    return run


# -- non-finite numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("override", ["train.lr=nan", "objective.beta=nan", "objective.beta=inf",
                                      "train.betas=[0.9, -inf]", "data.noise=nan", "train.grad_clip=+inf"])
def test_non_finite_numbers_are_refused_before_a_run_directory_exists(recipe, tmp_path, override):
    result = cli("train", recipe, "--run-dir", tmp_path / "new", "--set", override)
    key = override.split("=")[0].split(".")
    refused(result, f"--set: [{key[0]}] {key[1]}: expected a finite number")
    assert not (tmp_path / "new").exists()


def test_non_finite_numbers_in_a_recipe_file_name_the_file(recipe):
    recipe.write_text(recipe.read_text().replace("lr = 0.01", "lr = nan"))
    with pytest.raises(RecipeError, match=r"tiny.toml: \[train\] lr: expected a finite number, got nan"):
        load_recipe(recipe)


def test_non_finite_temperature_is_refused(run):
    result = cli("sample", run, "--temperature", "nan")
    assert result.exit_code == 2 and "'nan' is not a finite number" in result.output


# -- unsetting an optional key ---------------------------------------------------------------


def test_an_empty_value_unsets_a_key(recipe, tmp_path):
    data = tmp_path / "points.csv"
    data.write_text("1,2,3,4,5,6\n")
    recipe.write_text(recipe.read_text().replace("dim = 6", f'dim = 6\ncsv = "{data}"'))
    assert load_recipe(recipe).data.csv == data
    assert load_recipe(recipe, ["data.csv="]).data.csv is None           # back to the default: none
    assert load_recipe(recipe, ["train.lr="]).train.lr == 1e-3           # the default, not the recipe's 0.01
    with pytest.raises(RecipeError, match="path does not exist"):
        load_recipe(recipe, ["data.csv=none"])                            # a path called "none" is a path


# -- a refused or failed start ----------------------------------------------------------------


@pytest.mark.parametrize("folder", ["absent", "empty"])
def test_a_start_that_fails_in_the_first_batch_leaves_the_folder_as_it_was(recipe, tmp_path, monkeypatch, folder):
    import tiny_modality
    from vaezoo.core.errors import InputError

    def corrupt(self, examples):
        raise InputError("data/7.png: cannot read image (truncated)")

    monkeypatch.setattr(tiny_modality.TinyVectors, "collate", corrupt)
    run = tmp_path / "run"
    if folder == "empty":
        run.mkdir()
    refused(cli("train", recipe, "--run-dir", run, "--no-progress"), "data/7.png: cannot read image")
    assert (run.exists() and not any(run.iterdir())) if folder == "empty" else not run.exists()
    monkeypatch.undo()
    result = cli("train", recipe, "--run-dir", run, "--no-progress")   # the retry, once the data is fixed
    assert result.exit_code == 0, result.output


def test_a_new_run_that_fails_later_but_before_its_first_checkpoint_is_undone(recipe, tmp_path, monkeypatch):
    import tiny_modality

    calls = []

    def collate_then_fail(self, examples):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("out of memory")
        return {"x": __import__("torch").stack([e[0] for e in examples])}

    monkeypatch.setattr(tiny_modality.TinyVectors, "collate", collate_then_fail)
    run = tmp_path / "run"
    result = cli("train", recipe, "--run-dir", run, "--no-progress")
    assert result.exit_code != 0 and not run.exists()


# -- resume: a bad override or a damaged checkpoint changes nothing ----------------------------


@pytest.mark.parametrize("override, message", [
    ("train.device=cuda:99", "cuda:99"),
    ("train.lr=nan", "expected a finite number"),
    ("train.batch_size=0", "must be >= 1"),
    ("eval.split=dev", "expected one of"),
])
def test_resume_with_a_bad_override_touches_nothing(run, override, message):
    before = digest(run)
    refused(cli("train", "--resume", run, "--set", override, "--set", "train.epochs=2"), message)
    assert digest(run) == before
    result = cli("train", "--resume", run, "--set", "train.epochs=2", "--no-progress")   # it still resumes
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output


def test_changing_the_optimizer_on_resume_starts_its_state_fresh_and_says_so(run):
    result = cli("train", "--resume", run, "--set", "train.optimizer=sgd", "--set", "train.epochs=2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "train.optimizer changed from 'adam' to 'sgd'; the sgd state starts fresh at step 8" in result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"split": "event", "step": 8, "epoch": 1, "event": "optimizer_reset", "from": "adam", "to": "sgd"} in records
    state = json.loads((latest_weights(run).parent / "trainer_state.json").read_text())
    assert state["optimizer"]["kind"] == "sgd" and state["progress"]["step"] == 16
    assert 'optimizer = "sgd"' in (run / "recipe.toml").read_text()


def test_new_hyper_parameters_apply_on_resume(run):
    """load_state_dict brings back the saved betas; the recipe's new ones must win."""
    result = cli("train", "--resume", run, "--set", "train.betas=[0.5, 0.9]", "--set", "train.epochs=2", "--no-progress")
    assert result.exit_code == 0, result.output
    state = json.loads((latest_weights(run).parent / "trainer_state.json").read_text())
    assert all(group["betas"] == [0.5, 0.9] for group in state["optimizer"]["param_groups"])


@pytest.mark.parametrize("content", ["{}", "[]", '{"progress": {"step": "eight"}, "optimizer": {}, "rng": {}}', "{nope"])
def test_a_damaged_trainer_state_is_one_line(run, content):
    (latest_weights(run).parent / "trainer_state.json").write_text(content)
    before = digest(run)
    refused(cli("train", "--resume", run, "--no-progress"), "no complete checkpoint to resume from", "trainer_state.json")
    assert digest(run) == before


def test_resume_falls_back_to_the_last_complete_checkpoint_never_to_a_mixture(run, tmp_path):
    complete = latest_weights(run).parent
    # A newer checkpoint whose weights come from another step: its pieces disagree.
    mixed = complete.with_name("000007-step-9")
    shutil.copytree(complete, mixed)
    tensors = load_file(str(mixed / "model.safetensors"))
    save_file(tensors, str(mixed / "model.safetensors"), metadata={"step": "9"})
    state = json.loads((mixed / "trainer_state.json").read_text())
    state["progress"]["step"] = 9
    (mixed / "trainer_state.json").write_text(json.dumps(state))
    result = cli("train", "--resume", run, "--set", "train.epochs=2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "note: skipped 1 unusable checkpoint(s)" in result.output and "pieces disagree on the step" in result.output
    assert f"resuming {run} at step 8" in result.output
    (left,) = (run / "checkpoints").iterdir()   # the mixture is gone
    assert left.name.endswith("-step-16") and left.name > "000007"

    # Resumed from step 8, the run equals one trained for 2 epochs in one go.
    straight = tmp_path / "straight"
    assert cli("train", run / "recipe.toml", "--run-dir", straight, "--no-progress").exit_code == 0
    a, b = load_file(str(latest_weights(run))), load_file(str(latest_weights(straight)))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_a_run_killed_before_its_first_checkpoint_starts_over_on_resume(run, recipe, tmp_path):
    shutil.rmtree(run / "checkpoints")
    (run / "best.safetensors").unlink()
    result = cli("train", "--resume", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "has no checkpoint yet: starting it over from step 0" in result.output
    fresh = tmp_path / "fresh"
    assert cli("train", recipe, "--run-dir", fresh, "--no-progress").exit_code == 0
    assert (run / "metrics.jsonl").read_text().count("\n") == (fresh / "metrics.jsonl").read_text().count("\n")
    assert json.loads((run / "eval.json").read_text()) == json.loads((fresh / "eval.json").read_text())


# -- weights of another shape ------------------------------------------------------------------


def test_weights_of_another_shape_name_the_first_mismatching_tensor(run):
    before = digest(run)
    result = cli("sample", run, "--set", "latent.dim=3")
    refused(result, "weights do not fit the model: tensor 'decoder.net.0.weight' has shape [16, 2] in the file, "
                    "but the model built from recipe.toml needs [16, 3]")
    assert digest(run) == before


# -- outputs that cannot be written --------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["sample", "{run}", "--out", "{file}/sub"],
    ["reconstruct", "{run}", "--out", "{file}/sub"],
    ["interpolate", "{run}", "--out", "{file}/deeper/sub"],
    ["eval", "{run}", "--json", "{file}/eval.json"],
    ["encode", "{run}", "--out", "{file}/z.safetensors"],
    ["latent-map", "{run}", "--out", "{file}"],
    ["score", "{run}", "--out", "{file}/scores.csv"],
    ["report", "{run}", "--out", "{file}/report.html"],
    ["eval", "{run}", "--json", "{run}"],
    ["train", "{recipe}", "--run-dir", "{file}"],
], ids=lambda c: " ".join(c[:1] + c[2:3]))
def test_outputs_that_cannot_be_written_are_refused_before_any_work(run, recipe, tmp_path, command):
    file = tmp_path / "notes.txt"
    file.write_text("a regular file")
    before = digest(run)
    args = [a.format(run=run, file=file, recipe=recipe) for a in command]
    refused(cli(*args), args[2])
    assert digest(run) == before and file.read_text() == "a regular file"


# -- runs written by vaezoo 0.1 ------------------------------------------------------------------


def test_a_run_in_the_0_1_layout_opens_and_resumes(run, tmp_path):
    """0.1 kept one checkpoint's files at the top of the run directory, without the length of
    metrics.jsonl or the optimiser's kind; such a run still samples and resumes exactly."""
    folder = latest_weights(run).parent
    for piece in folder.iterdir():
        piece.rename(run / piece.name)
    shutil.rmtree(run / "checkpoints")
    state = json.loads((run / "trainer_state.json").read_text())
    hooks = state.pop("hooks")
    del state["metrics_bytes"], state["optimizer"]["kind"]
    # 0.1's optimiser had two parameter groups: the encoder's parameters, then the rest.
    (group,) = state["optimizer"]["param_groups"]
    n_encoder = sum(name.startswith("encoder.") for name in load_file(str(run / "model.safetensors")))
    state["optimizer"]["param_groups"] = [dict(group, name="encoder", params=group["params"][:n_encoder]),
                                          dict(group, name="decoder", params=group["params"][n_encoder:])]
    validation = hooks["validation"]   # 0.1 kept the loop's whole state in "progress"
    state["progress"].update(best_loss=validation["best_loss"], best_step=validation["best_step"],
                             bad_validations=validation["bad_validations"], aggressive=False, aggressive_mi=None,
                             window=hooks["metrics"]["window"])
    (run / "trainer_state.json").write_text(json.dumps(state))
    assert latest_weights(run) == run / "model.safetensors"
    assert cli("sample", run, "--weights", "last", "--n", 3, "--out", tmp_path / "s").exit_code == 0

    result = cli("train", "--resume", run, "--set", "train.epochs=2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"resuming {run} at step 8" in result.output
    assert not (run / "model.safetensors").exists() and not (run / "trainer_state.json").exists()
    straight = tmp_path / "straight"
    assert cli("train", run / "recipe.toml", "--run-dir", straight, "--no-progress").exit_code == 0
    a, b = load_file(str(latest_weights(run))), load_file(str(latest_weights(straight)))
    assert all((a[k] == b[k]).all() for k in a)
    train = lambda r: [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert train(run) == train(straight)
