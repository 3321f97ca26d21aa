"""The whole path on the tiny modality: train -> checkpoint -> resume -> sample -> eval -> encode."""

import hashlib
from functools import partial
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from vaezoo import __version__
from vaezoo.train.checkpoints import latest_weights
from vaezoo.cli import main
from vaezoo.core.errors import TrainingDiverged
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.trainer import Trainer


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def records(run: Path, split: str):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted run, shared by the tests that only read it."""
    from tiny_modality import TINY_RECIPE

    root = tmp_path_factory.mktemp("e2e")
    recipe = root / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    result = cli("train", recipe, "--run-dir", root / "full", "--no-progress")
    assert result.exit_code == 0, result.output
    return recipe, root / "full", result.output


def test_train_writes_a_complete_run_directory(trained):
    _, run, output = trained
    for name in ["recipe.toml", "best.safetensors", "metrics.jsonl", "eval.json", "samples/prior.csv"]:
        assert (run / name).exists(), name
    assert "IW-NLL (k=20)" in output and "active units" in output
    # One checkpoint folder (the last of those taken at each epoch's end and the run's end), holding all its pieces.
    (checkpoint,) = (run / "checkpoints").iterdir()
    assert checkpoint.name == "000004-step-24"
    assert sorted(p.name for p in checkpoint.iterdir()) == ["model.safetensors", "trainer_state.json",
                                                             "trainer_state.safetensors"]
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["vaezoo_version"] == __version__ and meta["modality"] == "tiny_modality:TinyVectors"
    assert meta["step"] == "24" and meta["plugin_api_version"] == "1.6"
    train = records(run, "train")
    assert [r["step"] for r in train] == list(range(1, 25))            # log_every = 1, 3 epochs of 8
    assert train[-1]["loss"] < train[0]["loss"]                          # it learns
    assert [r["beta"] for r in train[:3]] == pytest.approx([0.0, 0.1, 0.2])  # linear KL warm-up by step
    assert len(records(run, "validation")) == 3
    # The prior samples file parses: 5 rows of 6 numbers.
    rows = [list(map(float, line.split(","))) for line in (run / "samples/prior.csv").read_text().split()]
    assert len(rows) == 5 and all(len(r) == 6 for r in rows)
    # Trainer state has no pickle anywhere: JSON and safetensors only.
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["progress"]["step"] == 24 and state["progress"]["epoch"] == 3
    # The checkpoint knows how much of metrics.jsonl it covers: all but the end-of-training eval record.
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["split"] == "eval/test"
    assert state["metrics_bytes"] == sum(len(line) for line in lines[:-1])
    assert any(k.startswith("optimizer.") for k in load_file(str(checkpoint / "trainer_state.safetensors")))
    # eval.json says which weights it measured, as `vaezoo eval --json` does.
    figures = json.loads((run / "eval.json").read_text())
    assert figures["weights"] == "best" and figures["weights_step"] == state["hooks"]["validation"]["best_step"]


@pytest.mark.parametrize("stop_at", [11, 16], ids=["mid-epoch", "epoch-end"])
def test_interrupted_then_resumed_run_matches_uninterrupted(trained, tmp_path, stop_at):
    recipe_path, full, _ = trained
    run = tmp_path / "interrupted"

    def stop(trainer, record):
        if record["step"] == stop_at:
            if stop_at == 11:
                os.kill(os.getpid(), signal.SIGINT)   # a real Ctrl-C, handled by the trainer
            else:
                trainer.request_stop()

    result = Trainer(load_recipe(recipe_path), run, on_step=stop, progress_bar=False, echo=lambda m: None).fit()
    assert result.interrupted and result.steps == stop_at
    assert records(run, "train")[-1]["step"] == stop_at

    resumed = cli("train", "--resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} at step {stop_at}" in resumed.output
    assert records(run, "train") == records(full, "train")               # identical loss curve, bit for bit
    assert records(run, "validation") == records(full, "validation")
    for a, b in ((latest_weights(run), latest_weights(full)), (run / "best.safetensors", full / "best.safetensors")):
        a, b = load_file(str(a)), load_file(str(b))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "eval.json").read_text()) == json.loads((full / "eval.json").read_text())


def test_resume_can_extend_training_but_not_change_the_model(trained, tmp_path):
    recipe_path, _, _ = trained
    run = tmp_path / "short"
    assert cli("train", recipe_path, "--run-dir", run, "--set", "train.epochs=1", "--no-progress").exit_code == 0
    result = cli("train", "--resume", run, "--set", "model.hidden=64")
    assert result.exit_code == 2 and "only [train] and [eval] keys can change when resuming" in result.output
    result = cli("train", "--resume", run, "--set", "train.epochs=2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert records(run, "train")[-1]["step"] == 16


def test_sample_reconstruct_interpolate_eval_encode(trained, tmp_path):
    _, run, _ = trained
    result = cli("sample", run, "--n", 7, "--temperature", 0.5, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "samples-t0.5-seed0.csv").read_text().split()
    assert len(lines) == 7

    result = cli("reconstruct", run, "1,2,3,4,5,6", "0,0,0,0,0,0", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rec = load_file(str(tmp_path / "reconstructions.safetensors"))
    assert rec["input"].shape == rec["reconstruction"].shape == (2, 6)

    result = cli("interpolate", run, "--steps", 5, "--pairs", 3, "--method", "spherical", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert load_file(str(tmp_path / "interpolation-spherical.safetensors"))["mean"].shape == (15, 6)

    result = cli("eval", run, "--split", "validation", "-k", 50, "--json", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert figures["split"] == "validation" and figures["n_examples"] == 32 and figures["iw_samples"] == 50
    assert figures["iw_nll"] <= -figures["elbo"] + 0.05                  # the IW bound is tighter
    assert math.isclose(figures["kl"], sum(figures["kl_per_dim"]), rel_tol=1e-5)
    assert 0 <= figures["active_units"] <= 2
    assert "IW-NLL (k=50)" in result.output

    result = cli("encode", run, "--split", "test", "--max-examples", 10, "--out", tmp_path / "z.safetensors")
    assert result.exit_code == 0, result.output
    z = load_file(str(tmp_path / "z.safetensors"))
    assert z["mean"].shape == z["logvar"].shape == (10, 2)


def test_user_mistakes_give_clear_errors_and_touch_nothing(trained, tmp_path):
    recipe_path, run, _ = trained
    before = digest(run)
    result = cli("train", recipe_path, "--run-dir", run)
    assert result.exit_code == 2 and "folder exists and is not empty" in result.output
    result = cli("reconstruct", run, "1,2,x")
    assert result.exit_code == 2 and "input '1,2,x'" in result.output
    result = cli("interpolate", run, "1,2,3,4,5,6")
    assert result.exit_code == 2 and "two inputs" in result.output
    result = cli("sample", tmp_path / "nowhere")
    assert result.exit_code == 2 and "not a run directory" in result.output
    result = cli("train", "--resume", tmp_path)
    assert result.exit_code == 2 and "not a run directory" in result.output
    for r in (result,):
        assert "Traceback" not in r.output
    assert digest(run) == before


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from tiny_modality import TINY_RECIPE

    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    run = tmp_path / "run"

    def poison(trainer, record):
        if record["step"] == 10:  # after the first epoch's checkpoint (step 8)
            with torch.no_grad():
                for p in trainer.vae.parameters():
                    p.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"diverged at step 11 .*last good checkpoint \(step 8\)"):
        Trainer(load_recipe(path), run, on_step=poison, progress_bar=False, echo=lambda m: None).fit()
    weights = load_file(str(latest_weights(run)))
    assert all(torch.isfinite(t).all() for t in weights.values())
    with safe_open(str(latest_weights(run)), framework="pt") as f:
        assert f.metadata()["step"] == "8"
    assert records(run, "event")[-1]["event"] == "diverged"

    result = cli("train", path, "--run-dir", tmp_path / "run2", "--set", "train.lr=1e30", "--no-progress")
    assert result.exit_code == 3 and "training diverged" in result.output and "Traceback" not in result.output


def test_datasets_may_build_whole_batches(tiny_recipe, tmp_path):
    """A dataset with __getitems__ hands ready batches to the loader; training sees the same data."""
    import tiny_modality
    from torch.utils.data import Dataset

    from vaezoo.core.data import make_loader

    class Batched(Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i]}

        def __getitems__(self, indices):
            return {"x": self.x[indices]}

    from vaezoo import Modality

    x = tiny_modality.make_points(40, 6, 0.1, seed=0)
    collate = partial(Modality.collate, None)   # the base class's default collate (it reads no state)
    fast = list(make_loader(Batched(x), collate, 16, shuffle=True, seed=1))
    slow = list(make_loader([{"x": row} for row in x], collate, 16, shuffle=True, seed=1))
    assert len(fast) == len(slow) == 3
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(fast, slow))


def test_a_dataset_without_a_length_is_named():
    """The sampler needs len(dataset); torch's Dataset does not promise one, so the core checks."""
    from torch.utils.data import Dataset

    from vaezoo.core.data import dataset_length, first_examples, make_loader

    class Endless(Dataset):
        def __getitem__(self, i):
            return {"x": torch.zeros(2)}

    assert dataset_length([{"x": torch.zeros(2)}] * 3) == 3
    for call in (lambda: make_loader(Endless(), list, 4), lambda: first_examples(Endless(), list, 4)):
        with pytest.raises(TypeError, match="'Endless' has no len\\(\\): a map-style dataset needs __len__"):
            call()


def test_a_failed_data_fit_leaves_no_half_made_run(tmp_path, monkeypatch):
    import tiny_modality

    from vaezoo.core.errors import InputError

    def refuse(self, split):
        raise InputError("too few sentences in data.path")

    monkeypatch.setattr(tiny_modality.TinyVectors, "dataset", refuse)
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_modality.TINY_RECIPE)
    result = cli("train", path, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and "too few sentences" in result.output
    assert not (tmp_path / "run").exists()   # so the same --run-dir works once the data is fixed


def test_no_checkpoint_is_written_with_non_finite_weights(tmp_path):
    """Poisoned on the last step of an epoch: the loss is still finite, the checkpoint must refuse."""
    from tiny_modality import TINY_RECIPE

    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    run = tmp_path / "run"

    def poison(trainer, record):
        if record["step"] == 16:  # the end of epoch 2, just before its checkpoint
            with torch.no_grad():
                next(trainer.vae.parameters()).fill_(float("inf"))

    with pytest.raises(TrainingDiverged, match=r"diverged at step 16 .*non-finite.*last good checkpoint \(step 8\)"):
        Trainer(load_recipe(path), run, on_step=poison, progress_bar=False, echo=lambda m: None).fit()
    assert all(torch.isfinite(t).all() for t in load_file(str(latest_weights(run))).values())


def test_generating_commands_are_repeatable_with_a_seed(trained, tmp_path, monkeypatch):
    """--seed reaches every random draw a writer makes (Griffin-Lim phases, text sampling ...)."""
    import tiny_modality

    def noisy_writer(self, *args):
        stem = args[-1]
        path = Path(f"{stem}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(repr(torch.rand(4).tolist()))
        return [path]

    monkeypatch.setattr(tiny_modality.TinyVectors, "write_reconstructions", noisy_writer, raising=False)
    monkeypatch.setattr(tiny_modality.TinyVectors, "write_interpolations", noisy_writer, raising=False)
    _, run, _ = trained
    for command in (["sample", run, "--n", 4], ["reconstruct", run, "-n", 3], ["interpolate", run, "--pairs", 2]):
        outputs = {}
        for name, seed in (("a", 5), ("b", 5), ("c", 6)):
            assert cli(*command, "--seed", seed, "--out", tmp_path / command[0] / name).exit_code == 0
            outputs[name] = digest(tmp_path / command[0] / name)
        assert outputs["a"] == outputs["b"] and outputs["a"] != outputs["c"], command[0]
