"""The epoch sampler keeps one tensor of indices per epoch (4 bytes an example), and the
batches it always gave: same order, same padding over ranks, same resumption."""

from __future__ import annotations

import pytest
import torch

from vaezoo.core.data import EpochBatchSampler


def reference_batches(n, batch_size, *, seed, epoch, rank, world_size, drop_last, start):
    """EpochBatchSampler's batches as it defined them with Python lists (before it kept tensors)."""
    from vaezoo.core.seeds import derive_seed

    g = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
    order = torch.randperm(n, generator=g).tolist()
    per_rank = -(-n // world_size)
    order = (order * (1 + per_rank * world_size // max(1, n)))[: per_rank * world_size][rank::world_size]
    full = len(order) // batch_size
    count = full if drop_last and full > 0 else -(-len(order) // batch_size)
    return [order[i * batch_size: (i + 1) * batch_size] for i in range(count)][start:]


@pytest.mark.parametrize("n, batch_size, world_size, drop_last, start", [
    (1001, 64, 1, True, 0), (1001, 64, 2, False, 3), (5, 8, 3, True, 0), (100, 7, 3, False, 14)])
def test_the_sampler_keeps_its_batches_as_it_holds_a_tensor(n, batch_size, world_size, drop_last, start):
    for rank in range(world_size):
        kwargs = dict(seed=4, epoch=2, rank=rank, world_size=world_size, drop_last=drop_last, start=start)
        sampler = EpochBatchSampler(n, batch_size, shuffle=True, **kwargs)
        expected = reference_batches(n, batch_size, **kwargs)
        assert list(sampler) == expected and len(sampler) == len(expected)
