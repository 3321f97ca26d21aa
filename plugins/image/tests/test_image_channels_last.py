"""[train] channels_last = true for the conv model: it trains in channels-last memory format,
saves standard safetensors, and a stopped run resumes to the uninterrupted one bit for bit."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import vaezoo
from vaezoo.cli import main
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.trainer import Trainer

from test_image_cli import write_tiny

CHANNELS_LAST = ["train.channels_last=true", "train.epochs=2", "train.samples=0", "data.binarize=\"none\""]


def test_a_channels_last_run_trains_saves_and_resumes_exactly(tmp_path):
    recipe_path = write_tiny(tmp_path)
    full = Trainer(load_recipe(recipe_path, CHANNELS_LAST), tmp_path / "full", progress_bar=False, echo=lambda m: None)
    result = full.fit()
    assert result.steps == 8          # 48 images, 8 held out for validation and test: 4 batches an epoch
    conv = next(p for p in full.vae.parameters() if p.dim() == 4 and p.shape[1] > 1)   # (one channel is both layouts)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    def stop(trainer, record):
        if record["step"] == 3:
            trainer.request_stop()

    Trainer(load_recipe(recipe_path, CHANNELS_LAST), tmp_path / "run", on_step=stop, progress_bar=False,
            echo=lambda m: None).fit()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "run"), "--no-progress"])
    assert resumed.exit_code == 0, resumed.output

    def losses(run):
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r["split"] == "train"]

    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    a, b = load_file(str(latest_weights(tmp_path / "run"))), load_file(str(latest_weights(tmp_path / "full")))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The saved weights open in a standard model and give the trained model's decodings.
    run = vaezoo.open_run(tmp_path / "full", weights="last")
    z = torch.randn(3, 2)
    with torch.no_grad():
        assert torch.allclose(run.vae.decode(z).mean, full.vae.eval().decode(z).mean, atol=1e-6)
