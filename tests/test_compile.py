"""[train] compile = true: the objective runs torch.compile'd; a compiled run trains, and a
compiled run stopped and resumed equals the uninterrupted compiled run, bit for bit."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from click.testing import CliRunner

from vaezoo.cli import main
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.trainer import Trainer

from tiny_modality import TINY_RECIPE


def train(recipe_path, run, stop_at=None):
    def stop(trainer, record):
        if record["step"] == stop_at:
            trainer.request_stop()

    recipe = load_recipe(recipe_path, ["train.compile=true", "train.epochs=2", "train.samples=0", "eval.iw_samples=5"])
    trainer = Trainer(recipe, run, on_step=stop if stop_at else None, progress_bar=False, echo=lambda m: None)
    return trainer, trainer.fit()


def test_a_compiled_run_trains_and_resumes_exactly(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    trainer, full = train(recipe, tmp_path / "full")
    assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule)   # the compiled objective ran
    assert full.steps == 16 and not full.interrupted
    _, stopped = train(recipe, tmp_path / "run", stop_at=5)
    assert stopped.interrupted and stopped.steps == 5
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output

    def train_records(run):
        return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]

    assert [r["loss"] for r in train_records(tmp_path / "run")] == [r["loss"] for r in train_records(tmp_path / "full")]
    a, b = load_file(str(latest_weights(tmp_path / "run"))), load_file(str(latest_weights(tmp_path / "full")))
    assert all(torch.equal(a[k], b[k]) for k in a)
