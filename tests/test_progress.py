"""--no-progress on the commands that walk a split, and the eval table's MI ceiling end to end."""

import json
import math

import pytest
from click.testing import CliRunner

from vaezoo.cli import main
from vaezoo.core.progress import progress, progress_bars

# Each command writes beside tmp_path, never into the shared run (which tests only read).
COMMANDS = {
    "eval": lambda out: ["eval", "--json", out / "eval.json"],
    "score": lambda out: ["score", "--out", out / "scores.csv"],
    "latent-map": lambda out: ["latent-map", "--out", out / "map"],
    "encode": lambda out: ["encode", "--out", out / "latents.safetensors"],
}
BAR = "batch/s"  # tqdm's rate field: on every bar, in no other line these commands print


def invoke(run, name, out, *extra):
    command, *options = COMMANDS[name](out)
    result = CliRunner().invoke(main, [command, str(run), *map(str, options), *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_progress_silences_the_bar(labelled_run, tmp_path, name):
    shown = invoke(labelled_run, name, tmp_path / "shown")
    assert BAR in shown.stderr  # the bar goes to stderr ...
    assert BAR not in shown.stdout  # ... and never into what a script reads
    quiet = invoke(labelled_run, name, tmp_path / "quiet", "--no-progress")
    assert BAR not in quiet.output and "\r" not in quiet.output
    # the same work was done: the same lines on stdout, file paths aside
    assert [line for line in quiet.stdout.splitlines() if "wrote" not in line] == \
           [line for line in shown.stdout.splitlines() if "wrote" not in line]


def test_no_progress_is_in_the_help():
    for name in COMMANDS:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "--no-progress" in result.output and "No progress bar." in result.output


def test_progress_bars_switch_restores_the_previous_setting(capsys):
    with progress_bars(False):
        with progress_bars(True):
            list(progress(range(3), desc="inner", total=3))
        list(progress(range(3), desc="outer", total=3))
    list(progress(range(3), desc="after", total=3))
    err = capsys.readouterr().err
    assert "inner" in err and "outer" not in err and "after" in err


def test_eval_reports_mi_with_its_ceiling(labelled_run, tmp_path):
    result = invoke(labelled_run, "eval", tmp_path, "--no-progress")
    saved = json.loads((tmp_path / "eval.json").read_text())
    n = saved["n_examples"]  # the tiny test split: 32 examples, all in the aggregate
    assert saved["mutual_information_examples"] == n and saved["mutual_information_bound"] == pytest.approx(math.log(n))
    assert 0.0 <= saved["mutual_information"] <= math.log(n)
    row = next(line for line in result.stdout.splitlines() if line.startswith("mutual information"))
    assert f"{saved['mutual_information']:.4f} (at most log N = {math.log(n):.2f}" in row


@pytest.mark.parametrize("shown", [True, False])
def test_a_trainer_without_its_bar_silences_the_plugin_s_bars_too(tmp_path, shown):
    """Trainer(progress_bar=False), what `vaezoo train --no-progress` makes, silences the bars of
    data preparation (a plugin's vaezoo.progress in fit or dataset) and evaluation as well."""
    from tiny_modality import TINY_RECIPE
    from vaezoo.core import progress as progress_module
    from vaezoo.plugin.recipes import load_recipe
    from vaezoo.train.hooks import Hook
    from vaezoo.train.trainer import Trainer

    seen = []

    class Probe(Hook):
        name = "probe"

        def on_setup(self, trainer):
            seen.append(progress_module._show)

    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)
    recipe = load_recipe(tmp_path / "tiny.toml", ["train.epochs=1", "train.samples=0", "eval.iw_samples=0"])
    Trainer(recipe, tmp_path / "run", hooks=[Probe()], progress_bar=shown, echo=lambda m: None).fit()
    assert seen == [shown] and progress_module._show   # restored after fit
