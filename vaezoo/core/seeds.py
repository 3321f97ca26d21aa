"""One rule for seeding the many random streams of a run.

A stream is named by the integers that identify it, e.g. ``derive_seed(run_seed, "epoch", 3)``
for the shuffle of epoch 3 or ``derive_seed(split_seed, "binarize", index)`` for one
example's fixed draw. The seed is a hash of the whole name, so two streams never share a
seed by accident (arithmetic such as ``seed * 1_000_003 + epoch`` repeats when the numbers
grow), and a resumed run re-derives exactly the seeds the uninterrupted run used.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: int | str) -> int:
    """A seed in [0, 2**63) for the stream named by ``parts`` (integers and short labels)."""
    name = "/".join(str(int(p)) if not isinstance(p, str) else p for p in parts)
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 1


def seed_global_generators(seed: int) -> None:
    """Seed the global generators of torch, numpy and Python's ``random`` (what a plugin's
    own code may draw from), so that a run is reproducible whichever it uses; checkpoints
    keep all three, so a resume continues them."""
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
