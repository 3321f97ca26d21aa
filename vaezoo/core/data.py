"""Data plumbing shared by the trainer and plugins: seeded splits and resumable batching."""

from __future__ import annotations

import math
from collections.abc import Sized
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vaezoo.core.batches import Batch, slice_batch
from vaezoo.core.seeds import derive_seed
from vaezoo.core.batches import batch_size as examples_in  # batch_size is also a parameter name here
from vaezoo.core.errors import InputError


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (rest, held_out) with ``round(fraction * n)`` held out, seeded."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, round(fraction * n)) if fraction > 0 and n > 1 else 0
    return sorted(perm[held:]), sorted(perm[:held])


def dataset_length(dataset: Dataset) -> int:
    """``len(dataset)``: every map-style dataset has ``__len__``, though torch's ``Dataset`` does not declare it."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"object of type {type(dataset).__name__!r} has no len(): a map-style dataset needs __len__")
    return len(dataset)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of a seeded permutation for one epoch, sharded over ranks, resumable.

    The permutation depends on ``(seed, epoch)`` only, so a resumed run sees exactly the
    batches the uninterrupted run saw; ``start`` skips batches already consumed. Every rank
    gets the same number of batches (the permutation is padded by wrapping), as DDP needs.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        start: int = 0,
    ):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.drop_last, self.start = drop_last, start

    def _order(self) -> torch.Tensor:
        """This rank's indices for the epoch, as one tensor: 4 bytes per example (int32 below 2**31
        examples), not a Python list of them, so a sampler over millions stays small."""
        dtype = torch.int32 if self.n < 2**31 else torch.int64  # randperm draws the same order in either
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle", self.epoch))
            order = torch.randperm(self.n, generator=g, dtype=dtype)
        else:
            order = torch.arange(self.n, dtype=dtype)
        total = self._per_rank() * self.world_size
        if total > self.n:   # pad by wrapping around, so every rank gets as many
            order = order.repeat(-(-total // self.n))
        return order[:total][self.rank :: self.world_size]

    def _per_rank(self) -> int:
        return -(-self.n // self.world_size)

    def total(self) -> int:
        """Batches in the whole epoch, ignoring ``start``."""
        full = self._per_rank() // self.batch_size
        # Dropping the ragged tail keeps batch statistics uniform, unless that leaves nothing.
        return full if self.drop_last and full > 0 else -(-self._per_rank() // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order, size = self._order(), self.batch_size
        for i in range(self.start, self.total()):
            yield order[i * size : (i + 1) * size].tolist()

    def __len__(self) -> int:
        return max(0, self.total() - self.start)


def make_loader(
    dataset: Dataset,
    collate: Callable,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    sampler = EpochBatchSampler(
        dataset_length(dataset), batch_size, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
        world_size=world_size, drop_last=drop_last, start=start,
    )
    # Worker seeds come from this generator, not the global RNG, so loading never shifts training noise.
    generator = torch.Generator().manual_seed(derive_seed(seed, "workers", epoch))
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers, generator=generator)


def examples_at(dataset: Dataset, collate: Callable, indices: list[int]) -> Batch:
    """The examples at ``indices`` as one batch, through the dataset's batch fast path when it has one."""
    getitems = getattr(dataset, "__getitems__", None)
    return collate(getitems(indices) if getitems is not None else [dataset[i] for i in indices])


def first_examples(dataset: Dataset, collate: Callable, n: int) -> Batch:
    """The first ``n`` examples of a dataset as one batch, cycling when it holds fewer."""
    size = dataset_length(dataset)
    if size == 0:
        raise InputError("the split is empty")
    return examples_at(dataset, collate, [i % size for i in range(n)])


def random_batches(dataset: Dataset, collate: Callable, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless batches drawn without replacement within each batch; the same ``seed`` repeats them.

    For training chores outside the epoch's order (aggressive encoder steps): seeding by the
    step keeps a resumed run on the same batches without saving any sampler state.
    """
    g = torch.Generator().manual_seed(seed)
    n = dataset_length(dataset)
    size = min(batch_size, n)
    while True:
        # int32: the same draws as int64 (torch's randperm), half the memory per step
        yield examples_at(dataset, collate, torch.randperm(n, generator=g, dtype=torch.int32)[:size].tolist())


def split_batches(modality, split: str, size: int, max_examples: int | None = None) -> Iterator[Batch]:
    """Batches of ``split`` in order; the last is cut so at most ``max_examples`` come out."""
    loader = make_loader(modality.dataset(split), modality.collate, size)
    seen = 0
    for batch in loader:
        if max_examples and seen + examples_in(batch) > max_examples:
            batch = slice_batch(batch, slice(0, max_examples - seen))
        seen += examples_in(batch)
        yield batch
        if max_examples and seen >= max_examples:
            return


def batches_in(modality, split: str, size: int, max_examples: int | None = None) -> int:
    """How many batches ``split_batches`` yields (for progress bars)."""
    n = dataset_length(modality.dataset(split))
    return math.ceil(min(n, max_examples or n) / size)
