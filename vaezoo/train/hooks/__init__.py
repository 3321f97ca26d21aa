"""The training loop's hooks: the surface (``Hook``) and the behaviour built on it."""

from vaezoo.train.hooks.aggressive import AGGRESSIVE_BLOCK, AggressiveEncoder
from vaezoo.train.hooks.base import EVENTS, Hook, StepCallback
from vaezoo.train.hooks.checkpointing import Checkpointing
from vaezoo.train.hooks.metrics import TrainMetrics
from vaezoo.train.hooks.progress import ProgressBar
from vaezoo.train.hooks.validation import Validation

__all__ = ["EVENTS", "Hook", "StepCallback", "AggressiveEncoder", "AGGRESSIVE_BLOCK", "Checkpointing", "TrainMetrics",
           "ProgressBar", "Validation"]
