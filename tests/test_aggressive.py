"""Aggressive encoder updates (He et al. 2019): who moves when, when the phase ends, exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vaezoo.core.objectives import elbo_objective
from vaezoo.train.checkpoints import latest_weights
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.runs import build_modality, build_vae
from vaezoo.train.hooks import AGGRESSIVE_BLOCK
from vaezoo.train.optim import keep_gradients_of, make_optimizer
from vaezoo.train.trainer import Trainer

AGGRESSIVE = ["eval.at_end=false", "train.samples=0", "train.aggressive_encoder=true", "train.aggressive_max_inner=40"]


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_a_step_can_move_one_side_alone(tiny_recipe, tmp_path, side):
    recipe = load_recipe(tiny_recipe)
    torch.manual_seed(0)
    vae = build_vae(build_modality(recipe, tmp_path))
    optimizer = make_optimizer(vae.parameters(), recipe.train)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    batch = {"x": torch.randn(8, 6)}
    elbo_objective(vae, batch, beta=1.0).loss.backward()
    keep_gradients_of(vae, side)
    optimizer.step()
    after = vae.state_dict()
    for name, value in after.items():
        moved = not torch.equal(before[name], value)
        assert moved == name.startswith(f"{side}."), name


def test_phase_trains_the_encoder_in_blocks_and_ends_when_mi_stops_rising(tiny_recipe, tmp_path, monkeypatch):
    # Validation MI per epoch: rises, rises, falls -> the phase ends after epoch 3, for good.
    mi = iter([1.0, 2.0, 1.5, 3.0])
    real_validate = Trainer.validate_now

    def validate_with_scripted_mi(self, *args, **kwargs):
        result = real_validate(self, *args, **kwargs)
        result.mutual_information = next(mi)
        return result

    monkeypatch.setattr(Trainer, "validate_now", validate_with_scripted_mi)
    messages = []
    run = tmp_path / "run"
    recipe = load_recipe(tiny_recipe, [*AGGRESSIVE, "train.epochs=4"])
    result = Trainer(recipe, run, progress_bar=False, echo=messages.append).fit()
    assert result.steps == 32
    lines = metrics(run)
    inner = {r["step"]: r["encoder_steps"] for r in lines if r["split"] == "train"}
    # The loop stops when a block of 15 is no better than the one before, or at the cap of 40.
    assert set(inner[s] for s in range(1, 25)) <= {2 * AGGRESSIVE_BLOCK, 40}
    assert all(inner[s] == 0 for s in range(25, 33))
    events = [r for r in lines if r["split"] == "event"]
    assert [(e["event"], e["step"], e["mutual_information"]) for e in events] == [("aggressive_off", 24, 1.5)]
    assert any("aggressive encoder updates off from step 24" in m for m in messages)
    hooks = json.loads((latest_weights(run).parent / "trainer_state.json").read_text())["hooks"]
    assert hooks["aggressive"]["aggressive"] is False


def test_aggressive_run_resumes_exactly(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe, [*AGGRESSIVE, "train.epochs=2"])
    Trainer(recipe, tmp_path / "full", progress_bar=False, echo=lambda m: None).fit()

    def stop_at_5(trainer, record):
        if record["step"] == 5:
            trainer.request_stop()

    cut = tmp_path / "cut"
    assert Trainer(recipe, cut, on_step=stop_at_5, progress_bar=False, echo=lambda m: None).fit().interrupted
    Trainer(load_recipe(cut / "recipe.toml"), cut, resume=True, progress_bar=False, echo=lambda m: None).fit()
    full_train = [r for r in metrics(tmp_path / "full") if r["split"] == "train"]
    assert [r for r in metrics(cut) if r["split"] == "train"] == full_train
    assert any(r["encoder_steps"] > 0 for r in full_train)
    a, b = load_file(str(latest_weights(cut))), load_file(str(latest_weights(tmp_path / "full")))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_switch_can_change_when_resuming(tiny_recipe, tmp_path):
    run = tmp_path / "run"
    recipe = load_recipe(tiny_recipe, [*AGGRESSIVE, "train.epochs=1"])
    Trainer(recipe, run, progress_bar=False, echo=lambda m: None).fit()
    off = load_recipe(run / "recipe.toml", ["train.epochs=2", "train.aggressive_encoder=false"])
    Trainer(off, run, resume=True, progress_bar=False, echo=lambda m: None).fit()
    train = [r for r in metrics(run) if r["split"] == "train"]
    assert all(r["encoder_steps"] > 0 for r in train if r["step"] <= 8)
    assert all("encoder_steps" not in r for r in train if r["step"] > 8)   # switched off: no inner loop
    assert json.loads((latest_weights(run).parent / "trainer_state.json").read_text())["hooks"]["aggressive"]["aggressive"] is False
