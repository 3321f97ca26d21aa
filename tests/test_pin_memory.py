"""[train] pin_memory: page-locked training batches on CUDA, a notice and no change elsewhere."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.trainer import Trainer

from tiny_modality import TINY_RECIPE


def train(tmp_path, name, *overrides):
    recipe_path = tmp_path / "tiny.toml"
    recipe_path.write_text(TINY_RECIPE)
    recipe = load_recipe(recipe_path, ["train.epochs=1", "train.samples=0", "eval.iw_samples=0", *overrides])
    said: list[str] = []
    loader_pins: set[bool] = set()   # whether the worker loader pinned, seen during training

    def look(trainer, record):
        if trainer._train_loader is not None:
            loader_pins.add(trainer._train_loader.loader.pin_memory)

    trainer = Trainer(recipe, tmp_path / name, on_step=look, progress_bar=False, echo=said.append)
    trainer.fit()
    trainer.loader_pins = loader_pins
    return trainer, said, load_file(str(latest_weights(tmp_path / name)))


@pytest.mark.parametrize("workers", [0, 1])
def test_pin_memory_is_a_notice_and_nothing_else_off_cuda(tmp_path, workers):
    trainer, said, pinned = train(tmp_path, "pinned", "train.device=cpu", "train.pin_memory=true",
                                  f"train.num_workers={workers}")
    assert not trainer.pinned
    assert [m for m in said if "pin_memory" in m] == ["[train] pin_memory only applies to CUDA devices; ignored on cpu"]
    if workers:
        assert trainer.loader_pins == {False}
    _, said, plain = train(tmp_path, "plain", "train.device=cpu", f"train.num_workers={workers}")
    assert not [m for m in said if "pin_memory" in m]
    assert pinned.keys() == plain.keys() and all(torch.equal(pinned[k], plain[k]) for k in pinned)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
@pytest.mark.parametrize("workers", [0, 1])
def test_pinned_batches_train_as_pageable_ones_on_cuda(tmp_path, workers):
    trainer, said, pinned = train(tmp_path, "pinned", "train.device=cuda", "train.pin_memory=true",
                                  f"train.num_workers={workers}")
    assert trainer.pinned and not [m for m in said if "pin_memory" in m]
    if workers:
        assert trainer.loader_pins == {True}
    _, _, plain = train(tmp_path, "plain", "train.device=cuda", f"train.num_workers={workers}")
    assert all(torch.equal(pinned[k], plain[k]) for k in pinned)
