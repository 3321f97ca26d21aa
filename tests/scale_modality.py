"""Tiny modalities and a torchrun driver for the distributed tests (tests/test_distributed_scale.py).

``SharpTiny``: TinyVectors whose posterior is all but a point (log-variance -24, a standard
deviation of 6e-6): the reparameterised draws still change the low bits of z, so any
difference in the random streams shows in exact comparisons, but not in the losses beyond
float rounding; so a run on 1 process and one on 2 (whose ranks draw other noise) can be
compared. Its training split records which examples this process read.

``NoisyTiny``: TinyVectors whose training examples get random noise when they are read (as
a random crop would), from whatever generator the reading process has.

Run as a script under torchrun, this file is ``vaezoo train`` with a hook that writes each
rank's steps to OUT/rankR.jsonl (the step's loss, the examples this rank has read so far,
a digest of the weights) and, when VAEZOO_TEST_KILL=RANK:STEP, kills that rank with SIGKILL
after the optimiser step STEP (before its checkpoint):

    torchrun ... tests/scale_modality.py OUT train RECIPE --run-dir RUN
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys

import torch
from torch.utils.data import TensorDataset

from tiny_modality import Encoder, TinyVectors
from vaezoo.train.hooks.base import Hook

SHARP_LOGVAR = -24.0


class RecordingPoints(TensorDataset):
    """A TensorDataset that remembers every index read from it (in this process)."""

    def __init__(self, *tensors: torch.Tensor):
        super().__init__(*tensors)
        self.seen: list[int] = []

    def __getitem__(self, i):
        self.seen.append(int(i))
        return super().__getitem__(i)


class SharpEncoder(Encoder):
    def forward(self, batch):
        mean, _ = super().forward(batch)
        return mean, torch.full_like(mean, SHARP_LOGVAR)


class SharpTiny(TinyVectors):
    def dataset(self, split):
        data = super().dataset(split)
        return RecordingPoints(*data.tensors) if split == "train" else data

    def build_encoder(self):
        return SharpEncoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim)


class NoisyPoints(TensorDataset):
    def __getitem__(self, i):
        (x,) = super().__getitem__(i)
        return (x + 0.1 * torch.randn(x.shape),)


class NoisyTiny(TinyVectors):
    def dataset(self, split):
        data = super().dataset(split)
        return NoisyPoints(*data.tensors) if split == "train" else data


def weights_digest(vae: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class Record(Hook):
    """After every step: this rank's line in OUT/rankR.jsonl; SIGKILL at ``kill`` = (rank, step)."""

    name = "test_record"

    def __init__(self, out: str, kill: tuple[int, int] = (-1, -1)):
        self.out, self.kill = out, kill

    def after_step(self, trainer, record: dict) -> None:
        rank = trainer.ctx.rank
        line = {"step": trainer.state.step, "loss": record["loss"], "seen": getattr(trainer.train_set, "seen", []),
                "digest": weights_digest(trainer.vae)}
        with open(os.path.join(self.out, f"rank{rank}.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")
        if (rank, trainer.state.step) == self.kill:
            os.kill(os.getpid(), signal.SIGKILL)


def read_record(out, rank: int) -> list[dict]:
    with open(os.path.join(out, f"rank{rank}.jsonl")) as f:
        return [json.loads(line) for line in f]


if __name__ == "__main__":
    from vaezoo.cli import main
    from vaezoo.train import trainer as trainer_module

    out, kill = sys.argv[1], tuple(map(int, os.environ.get("VAEZOO_TEST_KILL", "-1:-1").split(":")))
    real_init = trainer_module.Trainer.__init__

    def init(self, *args, hooks=(), **kwargs):
        real_init(self, *args, hooks=[*hooks, Record(out, kill)], **kwargs)

    trainer_module.Trainer.__init__ = init  # type: ignore[method-assign]
    sys.argv = ["vaezoo", *sys.argv[2:]]
    main()
