"""The adversarial stage (VAE-GAN): a discriminator and its optimiser, owned by a hook.

Set up (``on_setup``): the plugin's discriminator (``Modality.build_discriminator``) or the
generic one for image-like inputs (``vaezoo.core.discriminators``), seeded apart from the
VAE; the recipe's objective is wrapped in ``AdversarialObjective``, which adds the
generator's terms to the VAE's loss once the phase has begun.

Each optimiser step, while the phase runs:
1. the trainer's forward and backward pass: the VAE's loss plus the generator's terms. The
   discriminator's parameters do not require gradients outside its own step, so this step
   never moves it (nor its optimiser's state);
2. ``after_backward``: with ``freeze_encoder``, the encoder's (and the flow's) gradients
   are dropped, so only the decoder and the prior move;
3. the VAE's optimiser step;
4. ``after_step``: the discriminator's step on the same micro-batches' real data and
   detached fakes (gradient accumulation honoured, bf16 autocast when the recipe says,
   gradients averaged over DDP ranks). Only its parameters require gradients then, and the
   fakes are detached, so it never moves the VAE. Its loss and mean scores join the record.

The discriminator's weights, its optimiser's state and the step the phase began go into
every checkpoint, so a resumed run continues bit for bit on CPU. Validation keeps the latest
weights as best.safetensors during the phase (the ELBO is not what the phase optimises).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from vaezoo.core.adversarial import AdversarialObjective, discriminator_loss, mean_logit
from vaezoo.core.data import first_examples
from vaezoo.core.discriminators import build_discriminator, check_verdicts
from vaezoo.core.errors import PluginError, RecipeError
from vaezoo.core.seeds import derive_seed
from vaezoo.train.hooks.base import Hook
from vaezoo.train.optim import make_optimizer


def adversarial_start(recipe) -> int:
    """The number of plain VAE steps before the phase: ``start_step``, or the end of a linear
    KL warm-up when later and ``after_kl_warmup``."""
    o = recipe.adversarial
    if o.after_kl_warmup and recipe.objective.kl_schedule == "linear":
        return max(o.start_step, recipe.objective.kl_warmup_steps)
    return o.start_step


class AdversarialStage(Hook):
    name = "adversarial"

    def __init__(self, options: Any):
        self.options = options
        self.start = 0
        self.started_at: int | None = None    # the step the phase began, once it has
        self.discriminator: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.objective: AdversarialObjective | None = None

    # -- set-up ------------------------------------------------------------------------------------
    def on_setup(self, trainer) -> None:
        o = self.options
        discriminator = self._build(trainer).to(trainer.device)
        discriminator.requires_grad_(False)    # only its own step turns its gradients on
        self.discriminator = discriminator
        self.optimizer = make_optimizer(
            discriminator.parameters(),
            SimpleNamespace(optimizer=o.optimizer, lr=o.lr, betas=o.betas, weight_decay=0.0, momentum=0.9,
                            fused_optimizer=trainer.cfg.fused_optimizer))
        try:
            self.objective = AdversarialObjective(trainer.objective, discriminator, o)
        except ValueError as err:
            raise RecipeError(trainer.recipe.source, "[adversarial] likelihood_weight", str(err)) from None
        trainer.objective = self.objective
        self.start = adversarial_start(trainer.recipe)
        if self.start and trainer.cfg.early_stopping_patience:
            trainer.echo(f"warning: train.early_stopping_patience may end the run before the adversarial phase "
                         f"begins at step {self.start}; set it to 0 to be sure the phase runs")

    def _build(self, trainer) -> nn.Module:
        recipe, modality, o = trainer.recipe, trainer.modality, self.options
        example = first_examples(trainer.train_set, modality.collate, 2)["x"]
        # Its own seed: the discriminator's initial weights do not depend on the VAE's, and
        # building it draws nothing from the random stream of the training steps.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(recipe.seed, "discriminator"))
            try:
                own = modality.build_discriminator(o)
            except ValueError as err:
                raise RecipeError(recipe.source, "[adversarial] enabled", f"the {recipe.modality} plugin refuses: {err}") from None
            if own is not None:
                if not isinstance(own, nn.Module):
                    raise PluginError(f"{recipe.modality}: build_discriminator returned {type(own).__name__}, not a "
                                      "torch.nn.Module")
                try:
                    with torch.no_grad():
                        out = own(example)
                except Exception as err:   # a stranger's network: name it, not a traceback
                    raise PluginError(f"{recipe.modality}'s discriminator fails on x of shape {list(example.shape)}: "
                                      f"{type(err).__name__}: {err}") from None
                check_verdicts(out, f"{recipe.modality}'s discriminator")
                return own
            if not example.is_floating_point() or example.dim() not in (3, 4):
                raise RecipeError(
                    recipe.source, "[adversarial] enabled",
                    f"the {recipe.modality} modality's inputs x are {str(example.dtype).removeprefix('torch.')} "
                    f"tensors of shape [N, {', '.join(map(str, example.shape[1:]))}]; the adversarial stage needs "
                    "continuous, image-like inputs [N, C, H, W] or [N, H, W], or a plugin whose "
                    "build_discriminator gives its own; set enabled = false")
            try:
                return build_discriminator(o.discriminator, example.shape[1:], channels=o.channels, layers=o.layers,
                                           scales=o.scales, spectral_norm=o.spectral_norm)
            except ValueError as err:
                raise RecipeError(recipe.source, "[adversarial] discriminator", str(err)) from None

    def on_fit_start(self, trainer) -> None:
        if self.started_at is not None:          # resumed inside the phase
            trainer.validation.selects_best = False

    # -- the phase -------------------------------------------------------------------------------
    def before_step(self, trainer) -> None:
        assert self.objective is not None and self.discriminator is not None
        self.objective.take_pairs()    # fakes of encoder-only steps (aggressive phase) are not this step's
        active = trainer.state.step >= self.start
        if active and self.started_at is None:
            self.started_at = step = trainer.state.step
            trainer.validation.selects_best = False
            trainer.log.write({"split": "event", "step": step, "epoch": trainer.state.epoch,
                               "event": "adversarial_start", "discriminator": type(self.discriminator).__name__,
                               "parameters": sum(p.numel() for p in self.discriminator.parameters())})
            trainer.echo(f"adversarial phase from step {step}: {type(self.discriminator).__name__}, "
                         f"{self.options.loss} loss" + (", encoder frozen" if self.options.freeze_encoder else ""))
        self.objective.active = active

    def after_backward(self, trainer) -> None:
        assert self.objective is not None
        if self.objective.active and self.options.freeze_encoder:
            vae = trainer.vae
            for p in [*vae.encoder.parameters(), *(vae.flow.parameters() if vae.flow is not None else [])]:
                p.grad = None    # optimisers skip parameters without a gradient

    def after_step(self, trainer, record: dict) -> None:
        assert self.objective is not None and self.discriminator is not None and self.optimizer is not None
        pairs = self.objective.take_pairs()
        if not pairs:
            return
        o, discriminator, optimizer = self.options, self.discriminator, self.optimizer
        discriminator.requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        figures = torch.zeros(3)
        for real, fakes in pairs:
            with trainer.autocast():
                real_out = discriminator(real)
                fake_outs = [discriminator(f) for f in fakes]
                loss = discriminator_loss(o.loss, real_out, fake_outs)
            (loss / len(pairs)).backward()
            figures += torch.stack([loss.detach().float(), mean_logit(real_out).detach(),
                                    mean_logit(fake_outs[0]).detach()]).cpu() / len(pairs)
        trainer.ctx.average_gradients(discriminator.parameters())
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(discriminator.parameters(), o.grad_clip)
        disc_loss, disc_real, disc_fake = figures.tolist()
        if trainer.ctx.any(not torch.isfinite(figures).all().item()):
            trainer.diverged(f"discriminator loss {disc_loss:.4g}", step=trainer.state.step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)    # frees them; the VAE's step leaves none
        discriminator.requires_grad_(False)
        record.update(disc_loss=disc_loss, disc_real=disc_real, disc_fake=disc_fake)

    # -- the checkpoint ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        assert self.discriminator is not None and self.optimizer is not None
        return {"started_at": self.started_at, "discriminator": self.discriminator.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.discriminator is not None and self.optimizer is not None
        if not state:    # a checkpoint from before the stage was switched on
            return
        self.started_at = state.get("started_at")
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
