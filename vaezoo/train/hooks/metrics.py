"""Training numbers in metrics.jsonl (and TensorBoard): step windows and epoch timing."""

from __future__ import annotations

import time
from typing import Any

from vaezoo.train.hooks.base import Hook

# Fields of a step's record that are not averaged over the window: every other number is
# (the loss terms, and whatever numbers hooks add, e.g. encoder_steps).
NOT_AVERAGED = ("split", "step", "epoch", "lr", "beta", "grad_norm", "batches")


class TrainMetrics(Hook):
    """One "train" record per ``log_every`` steps (the window's means; the last, shorter window
    at the end) and one "timing" record per epoch, its time summed over interruptions. The
    running sums live in the checkpoint, so a resumed run writes the same records.

    An epoch's time is the wall-clock time of its steps and everything the loop and the hooks
    do around them, less the time of validations (``trainer.excluded_seconds``)."""

    name = "metrics"

    def __init__(self) -> None:
        self.window: dict[str, Any] = {}
        self.epoch_seconds = 0.0   # training time so far this epoch
        self.epoch_batches = 0     # micro-batches trained so far this epoch
        self._mark = (0.0, 0.0)    # (clock, excluded seconds) when the time was last taken

    def on_epoch_start(self, trainer) -> None:
        self._mark = (time.perf_counter(), trainer.excluded_seconds)

    def after_step(self, trainer, record: dict) -> None:
        now, excluded = time.perf_counter(), trainer.excluded_seconds
        self.epoch_seconds += (now - self._mark[0]) - (excluded - self._mark[1])
        self._mark = (now, excluded)
        self.epoch_batches += record["batches"]
        w = self.window
        counts = w.setdefault("counts", {})   # per key: a hook's numbers may start mid-window
        for key, value in record.items():
            if key not in NOT_AVERAGED and isinstance(value, (int, float)) and not isinstance(value, bool):
                w[key] = w.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        w["n"] = w.get("n", 0) + 1
        if record["grad_norm"] is not None:
            w["grad_norm_sum"] = w.get("grad_norm_sum", 0.0) + record["grad_norm"]
            w["grad_norm_n"] = w.get("grad_norm_n", 0) + 1
        w["lr"], w["beta"] = record["lr"], record["beta"]
        if trainer.state.step % trainer.cfg.log_every == 0:
            self.flush(trainer)

    def flush(self, trainer) -> None:
        """Write the window's record and start a new window."""
        w = self.window
        if not w.get("n"):
            return
        n = w.pop("n")
        counts = w.pop("counts", {})   # absent in older checkpoints: every key then counts n
        out = {"split": "train", "step": trainer.state.step, "epoch": trainer.state.epoch, "lr": w.pop("lr"),
               "beta": w.pop("beta")}
        if w.get("grad_norm_n"):
            out["grad_norm"] = w.pop("grad_norm_sum") / w.pop("grad_norm_n")
        w.pop("grad_norm_sum", None), w.pop("grad_norm_n", None)
        out.update({k: v / counts.get(k, n) for k, v in w.items()})
        trainer.log.write(out)
        self.window = {}

    def log_timing(self, trainer) -> None:
        if self.epoch_batches:
            examples = self.epoch_batches * trainer.cfg.batch_size * trainer.ctx.world_size
            trainer.log.write({"split": "timing", "step": trainer.state.step, "epoch": trainer.state.epoch,
                               "train_seconds": self.epoch_seconds,
                               "examples_per_second": examples / max(self.epoch_seconds, 1e-9)})
        self.epoch_seconds, self.epoch_batches = 0.0, 0

    def on_epoch_end(self, trainer) -> None:
        self.log_timing(trainer)   # resets: a second call (a resume from here) writes nothing

    def on_train_end(self, trainer) -> None:
        self.log_timing(trainer)  # an epoch cut short by max_steps or early stopping
        self.flush(trainer)       # the last, shorter window

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "epoch_seconds": self.epoch_seconds, "epoch_batches": self.epoch_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = dict(state.get("window", {}))
        self.epoch_seconds = float(state.get("epoch_seconds", 0.0))
        self.epoch_batches = int(state.get("epoch_batches", 0))
