"""Schedules as pure functions of the optimisation step.

Because beta and the learning rate depend on the step alone, a resumed run needs no
scheduler state to continue exactly where it stopped.

KL weight (beta) schedules:

- constant:  beta
- linear:    rises from ``start * beta`` to ``beta`` over ``warmup_steps`` steps (Bowman et al. 2016)
- cyclical:  repeats every ``period`` steps, rising linearly for the first ``ratio`` of each
             cycle and holding ``beta`` for the rest (Fu et al. 2019)
- logistic:  beta / (1 + exp(-steepness * (step - midpoint))) (Bowman et al. 2016)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class KLSchedule:
    kind: str = "constant"
    beta: float = 1.0
    start: float = 0.0
    warmup_steps: int = 0
    period: int = 1000
    ratio: float = 0.5
    midpoint: int = 2500
    steepness: float = 0.0025

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.beta
        if self.kind == "linear":
            return self.beta * _ramp(step, self.warmup_steps, self.start)
        if self.kind == "cyclical":
            rising = max(1, round(self.ratio * self.period))
            return self.beta * _ramp(step % self.period, rising, self.start)
        if self.kind == "logistic":
            return self.beta / (1.0 + math.exp(-self.steepness * (step - self.midpoint)))
        raise ValueError(f"unknown KL schedule {self.kind!r}")


def _ramp(step: int, length: int, start: float) -> float:
    """Linear from ``start`` at step 0 to 1 at step ``length``, then 1."""
    if length <= 0 or step >= length:
        return 1.0
    return start + (1.0 - start) * step / length


@dataclass(frozen=True)
class LRSchedule:
    """Learning-rate multiplier: linear warmup, then constant, cosine or linear decay to ``min_factor``."""

    kind: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 1
    min_factor: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.kind == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        elif self.kind == "linear":
            decay = 1.0 - progress
        else:
            raise ValueError(f"unknown LR schedule {self.kind!r}")
        return self.min_factor + (1.0 - self.min_factor) * decay
