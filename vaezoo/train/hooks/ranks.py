"""Every rank's random streams in the checkpoint, so a distributed run resumes exactly."""

from __future__ import annotations

from typing import Any

import torch

from vaezoo.core.seeds import derive_seed, seed_global_generators
from vaezoo.train.checkpoints import capture_rng, restore_rng
from vaezoo.train.distributed import DistContext
from vaezoo.train.hooks.base import Hook


class RankStreams(Hook):
    """Rank 0 writes the checkpoint, and its RNG state is the one the checkpoint keeps; the
    other ranks draw their own noise (seeded by rank), which a resume must continue too.
    This hook's state holds every rank's streams (gathered when a checkpoint is taken, on
    every rank), and after a resume each rank takes its own back. A run resumed on another
    number of processes cannot continue them: ranks other than 0 then start streams of
    (seed, rank, step), distinct from each other. Nothing to do in one process."""

    name = "ranks"

    def __init__(self) -> None:
        self.ctx: DistContext | None = None
        self.saved: dict[str, Any] = {}

    def on_setup(self, trainer) -> None:
        self.ctx = trainer.ctx

    def state_dict(self) -> dict[str, Any]:
        if self.ctx is None or not self.ctx.enabled:
            return {}
        tensors, info = capture_rng()
        mine = {"info": info, "tensors": {k: [str(t.dtype).removeprefix("torch."), t.tolist()] for k, t in tensors.items()}}
        streams = self.ctx.gather_json(mine)
        return {"world_size": self.ctx.world_size,
                "streams": [{"info": s["info"], "tensors": {k: torch.tensor(values, dtype=getattr(torch, dtype))
                                                             for k, (dtype, values) in s["tensors"].items()}}
                            for s in streams]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = state

    def on_fit_start(self, trainer) -> None:
        ctx = trainer.ctx
        if trainer.saved_step is None or not ctx.enabled or ctx.is_main:
            return   # a new run seeds every rank itself; rank 0's streams are the checkpoint's own
        if self.saved.get("world_size") == ctx.world_size:
            stream = self.saved["streams"][ctx.rank]
            restore_rng(stream["tensors"], stream["info"])
        else:
            seed_global_generators(derive_seed(trainer.recipe.seed, "rank", ctx.rank, trainer.state.step))
        self.saved = {}
