"""Aggressive encoder updates (He et al. 2019) against posterior collapse.

Before each decoder step the encoder trains alone on fresh batches until its loss stops
falling (judged per block of ``AGGRESSIVE_BLOCK`` steps, at most ``aggressive_max_inner``);
then the step's gradients update the decoder only. The phase ends for good at the first
validation whose mutual information does not rise.
"""

from __future__ import annotations

import math
from typing import Any

from vaezoo.core.batches import to_device
from vaezoo.train.hooks.base import Hook
from vaezoo.train.optim import keep_gradients_of

# He et al. (2019) judge the inner encoder loop every 15 steps: it ends when a block's mean
# loss is no lower than the previous block's.
AGGRESSIVE_BLOCK = 15


class AggressiveEncoder(Hook):
    name = "aggressive"

    def __init__(self) -> None:
        self.active = False
        self.last_mi: float | None = None   # validation MI at the last check of the phase
        self.inner = 0                      # encoder-only steps before the current step

    def on_fit_start(self, trainer) -> None:
        # [train] keys may change on resume: the switch can end the phase, or start one that never ran.
        self.active = trainer.cfg.aggressive_encoder and (self.active or self.last_mi is None)

    def before_step(self, trainer) -> None:
        self.inner = self._encoder_steps(trainer) if self.active else 0

    def after_backward(self, trainer) -> None:
        if self.active:
            keep_gradients_of(trainer.vae, "decoder")  # the encoder had its turn

    def after_step(self, trainer, record: dict) -> None:
        if trainer.cfg.aggressive_encoder:
            record["encoder_steps"] = self.inner

    def on_validation(self, trainer, result) -> bool:
        if not self.active:
            return False
        mi = result.mutual_information
        if self.last_mi is not None and mi <= self.last_mi:
            self.active = False
            step, epoch = trainer.state.step, trainer.state.epoch
            trainer.log.write({"split": "event", "step": step, "epoch": epoch, "event": "aggressive_off",
                               "mutual_information": mi, "previous_mutual_information": self.last_mi})
            trainer.echo(f"aggressive encoder updates off from step {step}: validation MI {mi:.3f} "
                         f"did not rise above {self.last_mi:.3f}")
        self.last_mi = mi
        return False

    def _encoder_steps(self, trainer) -> int:
        """Algorithm 1 of He et al.: encoder-only steps on fresh batches (seeded by the step, so
        a resume repeats them) until the loss stops falling. Returns how many were taken."""
        cfg, optimizer = trainer.cfg, trainer.optimizer
        batches = trainer.random_train_batches("encoder-batches")
        previous_block, block, taken = math.inf, 0.0, 0
        while taken < cfg.aggressive_max_inner:
            optimizer.zero_grad(set_to_none=True)
            out = trainer.forward(to_device(next(batches), trainer.device), trainer.beta)
            out.loss.backward()
            loss = out.loss.item()
            if trainer.ctx.any(not math.isfinite(loss)):
                trainer.diverged(f"loss {loss:.4g} in an aggressive encoder step", step=trainer.state.step + 1)
            keep_gradients_of(trainer.vae, "encoder")
            trainer.clip_gradients(trainer.vae.encoder.parameters())
            optimizer.step()
            taken += 1
            block += loss
            if taken % AGGRESSIVE_BLOCK == 0:
                # Every rank leaves together, or DDP would wait forever on the one that stayed.
                if trainer.ctx.any(block >= previous_block):
                    break
                previous_block, block = block, 0.0
        return taken

    def state_dict(self) -> dict[str, Any]:
        return {"aggressive": self.active, "aggressive_mi": self.last_mi}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.active = bool(state.get("aggressive", False))
        self.last_mi = state.get("aggressive_mi")
