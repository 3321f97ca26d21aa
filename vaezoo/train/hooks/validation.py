"""Validation: when to validate, the best weights, early stopping."""

from __future__ import annotations

import math
import time
from typing import Any

from vaezoo.train.checkpoints import BEST, save_weights
from vaezoo.train.hooks.base import Hook


class Validation(Hook):
    """Validates every ``eval_every`` steps (or at each epoch's end when 0) and at the last
    step, once; keeps ``best.safetensors`` at the lowest validation -ELBO; stops the run
    after ``early_stopping_patience`` validations without improvement. Every hook's
    ``on_validation`` sees the result and may ask to stop too.

    A hook that trains for something other than the ELBO (the adversarial phase) sets
    ``selects_best = False``: every validation then keeps its weights as best.safetensors
    and none counts against early stopping."""

    name = "validation"

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_step = -1
        self.bad_validations = 0       # validations since the last improvement
        self.last_step = -1            # the step validated last, so no step is validated twice
        self.selects_best = True       # False: keep the latest weights (set by hooks, not saved)

    def after_step(self, trainer, record: dict) -> None:
        every = trainer.cfg.eval_every
        if every and trainer.state.step % every == 0:
            self.validate(trainer)

    def on_epoch_end(self, trainer) -> None:
        if not trainer.cfg.eval_every and self.last_step != trainer.state.step:
            self.validate(trainer)

    def on_train_end(self, trainer) -> None:
        # The steps since the last validation count for best.safetensors and eval.json too.
        if trainer.state.step > 0 and self.last_step != trainer.state.step:
            self.validate(trainer)

    def validate(self, trainer) -> None:
        cfg, state = trainer.cfg, trainer.state
        tick = time.perf_counter()
        result = trainer.validate_now()
        trainer.excluded_seconds += time.perf_counter() - tick   # not training time
        loss = -result.elbo
        trainer.log.write({"split": "validation", "step": state.step, "epoch": state.epoch, "loss": loss,
                           "elbo": result.elbo, "reconstruction": result.reconstruction, "kl": result.kl,
                           "active_units": result.active_units, "mutual_information": result.mutual_information})
        self.last_step = state.step
        improved = loss < self.best_loss - cfg.early_stopping_min_delta or not self.selects_best
        if improved:
            self.best_loss, self.best_step, self.bad_validations = loss, state.step, 0
            if trainer.ctx.is_main:
                save_weights(trainer.vae, trainer.run_dir / BEST, trainer.weights_metadata())
        else:
            self.bad_validations += 1
        # After the last epoch the counter has moved past it: name the epoch that ran.
        epoch = min(state.epoch + 1, cfg.epochs)
        trainer.echo(f"step {state.step} epoch {epoch}: validation -ELBO {loss:.4f} (KL {result.kl:.3f}, "
                     f"AU {result.active_units}, MI {result.mutual_information:.3f})" + (" *best*" if improved and self.selects_best else " *kept*" if improved else ""))
        if result.active_units == 0 and trainer.modality.uses_latent:
            trainer.echo("warning: no active latent units (posterior collapse); consider KL annealing or free bits")
        stop = any([hook.on_validation(trainer, result) for hook in trainer.hooks if hook is not self])
        if cfg.early_stopping_patience and self.bad_validations >= cfg.early_stopping_patience:
            trainer.echo(f"early stopping: no improvement in {cfg.early_stopping_patience} validations")
            stop = True
        if stop:
            trainer.stop_early()

    @property
    def best(self) -> float | None:
        return None if math.isinf(self.best_loss) else self.best_loss

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best, "best_step": self.best_step, "bad_validations": self.bad_validations,
                "last_validation_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = math.inf if state.get("best_loss") is None else float(state["best_loss"])
        self.best_step = int(state.get("best_step", -1))
        self.bad_validations = int(state.get("bad_validations", 0))
        self.last_step = int(state.get("last_validation_step", -1))
