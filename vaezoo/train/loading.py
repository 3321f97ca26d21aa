"""Training batches from worker processes that live as long as the run, resumable exactly.

A ``DataLoader``'s workers outlive an epoch only when the loader object does
(``persistent_workers``), while the trainer's batches follow a new seeded order every epoch
(``EpochBatchSampler`` of (seed, epoch), from a batch ``start`` after a resume). So one
loader serves the whole run, and its batch sampler is told the epoch and start before each
pass. Random draws that a dataset makes while loading (a random crop) cannot come from a
worker's own stream, which runs on from wherever the worker started: each batch reseeds the
worker's generators from (seed, epoch, rank, batch index), so a resumed run loads exactly
what the uninterrupted one did.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vaezoo.core.batches import Batch
from vaezoo.core.data import EpochBatchSampler, dataset_length
from vaezoo.core.seeds import derive_seed, seed_global_generators


class SeededIndices(list):
    """A batch's example indices and the seed of the random draws made while loading it."""

    def __init__(self, indices: list[int], seed: int):
        super().__init__(indices)
        self.seed = seed

    def __reduce__(self):   # to the worker and back through its queue, seed included
        return SeededIndices, (list(self), self.seed)


class SeededDataset(Dataset):
    """``dataset`` as a worker reads it: each batch with its generators seeded by the batch's seed."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return dataset_length(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]

    def __getitems__(self, indices: SeededIndices) -> list:
        seed_global_generators(indices.seed)   # the worker's own generators: the trainer's are elsewhere
        getitems = getattr(self.dataset, "__getitems__", None)
        return getitems(list(indices)) if getitems is not None else [self.dataset[i] for i in indices]


class EpochSampler(Sampler[list[int]]):
    """The batches of the epoch named last by ``set_epoch``, from its ``start``-th on."""

    def __init__(self, sampler: Callable[[int, int], EpochBatchSampler], seed: int, rank: int):
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.sampler(self.epoch, self.start)
        return iter([SeededIndices(indices, derive_seed(self.seed, "load", self.epoch, self.rank, i))
                     for i, indices in enumerate(batches, self.start)])

    def __len__(self) -> int:
        return len(self.sampler(self.epoch, self.start))


class EpochLoader:
    """The training batches of every epoch through one ``DataLoader`` with persistent workers.

    ``sampler(epoch, start)`` gives an epoch's batches from ``start`` on, exactly those the
    trainer reads in its own process without workers: the same batches either way."""

    def __init__(self, dataset: Dataset, collate: Callable, sampler: Callable[[int, int], EpochBatchSampler], *,
                 seed: int, rank: int, num_workers: int, pin_memory: bool = False):
        self.batches = EpochSampler(sampler, seed, rank)
        # Its generator only seeds the workers' start, which no draw depends on (every batch reseeds).
        # pin_memory: a thread of this process pins each batch as it arrives, ahead of its step.
        self.loader = DataLoader(SeededDataset(dataset), batch_sampler=self.batches, collate_fn=collate,
                                 num_workers=num_workers, persistent_workers=True, pin_memory=pin_memory,
                                 generator=torch.Generator().manual_seed(derive_seed(seed, "workers")))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from the ``start``-th on."""
        self.batches.set_epoch(epoch, start)
        return iter(self.loader)
