"""Checkpoints: after every validation, every ``checkpoint_every`` steps, at each epoch's end
and when the loop ends (Ctrl-C included), each one crash-safe and holding every hook's state."""

from __future__ import annotations

from vaezoo.train.checkpoints import write_checkpoint
from vaezoo.train.hooks.base import Hook


class Checkpointing(Hook):
    name = "checkpointing"

    def __init__(self) -> None:
        self.due = False
        self.saved: tuple | None = None   # (position, metrics length) at the last checkpoint: nothing new, no checkpoint

    def on_fit_start(self, trainer) -> None:
        if trainer.saved_step is not None:        # resumed: the checkpoint it came from holds this moment
            self.saved = self._moment(trainer)

    def on_validation(self, trainer, result) -> bool:
        self.due = True                            # best-so-far and patience go into the next checkpoint
        return False

    def after_step(self, trainer, record: dict) -> None:
        every = trainer.cfg.checkpoint_every
        if self.due or (every and trainer.state.step % every == 0):
            self.save(trainer)

    def on_epoch_end(self, trainer) -> None:
        self.save(trainer)

    def on_fit_end(self, trainer) -> None:
        self.save(trainer)

    def _moment(self, trainer) -> tuple:
        s = trainer.state
        return (s.step, s.epoch, s.batch_in_epoch, trainer.log.size())

    def save(self, trainer) -> None:
        self.due = False
        if self._moment(trainer) == self.saved:
            return
        trainer.check_weights_finite()
        hooks = {hook.name: hook.state_dict() for hook in trainer.hooks}   # on every rank: a hook may gather
        if trainer.ctx.is_main:
            write_checkpoint(trainer.run_dir, model=trainer.vae, metadata=trainer.weights_metadata(),
                             optimizer=trainer.optimizer, optimizer_kind=trainer.cfg.optimizer,
                             progress=trainer.state.as_dict(), metrics_bytes=trainer.log.durable_size(),
                             hooks=hooks)
        self.saved = self._moment(trainer)
        trainer.saved_step = trainer.state.step
