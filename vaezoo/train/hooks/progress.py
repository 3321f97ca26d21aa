"""The progress bar of an epoch (tqdm on stderr, rank 0 only)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from vaezoo.train.hooks.base import Hook


class ProgressBar(Hook):
    name = "progress_bar"

    def __init__(self, show: bool = True):
        self.show = show
        self.bar: tqdm | None = None

    def on_epoch_start(self, trainer) -> None:
        self.bar = tqdm(total=trainer.batches_per_epoch, initial=trainer.state.batch_in_epoch,
                        disable=not (self.show and trainer.ctx.is_main), desc=f"epoch {trainer.state.epoch + 1}/{trainer.cfg.epochs}",
                        unit="batch", leave=False, mininterval=0.5 if sys.stderr.isatty() else 10, file=sys.stderr)

    def after_step(self, trainer, record: dict) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.update(record["batches"])
            # refresh=False: the bar redraws at its own interval, not on every step (CI logs).
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", kl=f"{record['kl']:.2f}", beta=f"{record['beta']:.2f}",
                                 refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, trainer) -> None:
        self.close()

    def on_fit_end(self, trainer) -> None:
        self.close()
