"""The loop's hook surface: the order of calls, and a hook that owns a network and an
optimiser, whose state goes into the crash-safe checkpoint and resumes bit for bit."""

from __future__ import annotations

import json

import torch
from torch import nn

from tiny_modality import TINY_RECIPE
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.hooks import Hook
from vaezoo.train.trainer import Trainer

QUIET = ["eval.at_end=false", "train.samples=0", "train.tensorboard=false"]


class Recorder(Hook):
    name = "recorder"

    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append("fit_start")

    def on_epoch_start(self, trainer):
        self.calls.append("epoch_start")

    def before_step(self, trainer):
        self.calls.append("before_step")

    def after_backward(self, trainer):
        assert all(p.grad is not None for p in trainer.vae.parameters())
        self.calls.append("after_backward")

    def after_step(self, trainer, record):
        self.calls.append(f"after_step {record['step']}")

    def on_validation(self, trainer, result):
        self.calls.append(f"validation {trainer.state.step}")
        return False

    def on_epoch_end(self, trainer):
        self.calls.append("epoch_end")

    def on_train_end(self, trainer):
        self.calls.append("train_end")

    def on_fit_end(self, trainer):
        self.calls.append("fit_end")


def test_hooks_are_called_in_the_documented_order(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)
    recipe = load_recipe(tmp_path / "tiny.toml", [*QUIET, "train.epochs=1", "train.max_steps=3", "train.eval_every=2"])
    recorder = Recorder()
    Trainer(recipe, tmp_path / "run", hooks=[recorder], progress_bar=False, echo=lambda m: None).fit()
    step = ["before_step", "after_backward"]
    assert recorder.calls == ["fit_start", "epoch_start", *step, "after_step 1", *step, "after_step 2", "validation 2",
                              *step, "after_step 3", "train_end", "validation 3", "fit_end"]


class Critic(Hook):
    """A second network with its own optimiser, trained beside the VAE on its latents (as an
    adversarial stage would): it must never move the VAE, and it must resume exactly."""

    name = "critic"

    def __init__(self):
        torch.manual_seed(123)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=0.01)
        self.steps = 0

    def after_step(self, trainer, record):
        batch = next(trainer.random_train_batches("critic"))
        with torch.no_grad():
            z = trainer.vae.encode(batch).mean          # detached: the VAE is not trained by this loss
        loss = (self.net(z).squeeze(-1) - z.pow(2).sum(-1)).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        record["critic_loss"] = loss.item()             # logged by the metrics hook that follows

    def state_dict(self):
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]


def train_records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]


def test_a_hook_with_its_own_network_and_optimiser_resumes_bit_for_bit(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)
    recipe = load_recipe(tmp_path / "tiny.toml", QUIET)
    full_critic = Critic()
    Trainer(recipe, tmp_path / "full", hooks=[full_critic], progress_bar=False, echo=lambda m: None).fit()

    def stop_at_11(trainer, record):
        if record["step"] == 11:
            trainer.request_stop()

    cut = tmp_path / "cut"
    assert Trainer(recipe, cut, hooks=[Critic()], on_step=stop_at_11, progress_bar=False, echo=lambda m: None).fit().interrupted
    saved = load_file_tensors(cut)
    assert any(name.startswith("hooks/critic/net/") for name in saved)              # its weights ...
    assert any(name.startswith("hooks/critic/optimizer/") for name in saved)        # ... and its Adam moments
    resumed_critic = Critic()   # fresh weights: only the checkpoint can make it equal
    Trainer(load_recipe(cut / "recipe.toml"), cut, resume=True, hooks=[resumed_critic], progress_bar=False,
            echo=lambda m: None).fit()
    assert resumed_critic.steps == full_critic.steps == 24
    for a, b in zip(resumed_critic.net.parameters(), full_critic.net.parameters()):
        assert torch.equal(a, b)
    assert train_records(cut) == train_records(tmp_path / "full")
    assert all("critic_loss" in r for r in train_records(cut))
    from safetensors.torch import load_file

    a, b = load_file(str(latest_weights(cut))), load_file(str(latest_weights(tmp_path / "full")))
    assert all(torch.equal(a[k], b[k]) for k in a)


def load_file_tensors(run):
    from safetensors.torch import load_file

    return load_file(str(latest_weights(run).parent / "trainer_state.safetensors"))
