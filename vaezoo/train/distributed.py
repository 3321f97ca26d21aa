"""DistributedDataParallel set-up when a run is started by torchrun.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them everything runs in one
process. CPU runs use the gloo backend, CUDA runs NCCL. Only rank 0 writes files.
Several machines: one torchrun per machine with the c10d rendezvous (the README has the
command); nothing here depends on where the ranks run.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @property
    def _device(self) -> torch.device:
        """Where collectives take their tensors: NCCL needs this rank's GPU, gloo the CPU."""
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, values: list[float]) -> list[float]:
        """The mean of each of ``values`` over the ranks, on every rank (one all-reduce, in float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._device)
        dist.all_reduce(t)
        return (t / self.world_size).tolist()

    def gather_rows(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's 2-D ``rows``, on every rank, in rank order (on the CPU). The ranks may
        hold different numbers of rows and columns (an empty ``[0, 0]`` fits anything), but
        one dtype. Two collectives: the shapes, then the rows padded to the largest."""
        if not self.enabled:
            return [rows.cpu()]
        shape = torch.tensor(rows.shape, dtype=torch.int64, device=self._device)
        shapes = [torch.empty_like(shape) for _ in range(self.world_size)]
        dist.all_gather(shapes, shape)
        sizes = [tuple(s.tolist()) for s in shapes]
        padded = torch.zeros(max(r for r, _ in sizes), max(c for _, c in sizes), dtype=rows.dtype, device=self._device)
        padded[: rows.shape[0], : rows.shape[1]] = rows
        out = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(out, padded)
        return [o[:r, :c].cpu() for o, (r, c) in zip(out, sizes)]

    def gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-ready ``value``, on every rank, in rank order (as JSON text in
        bytes: nothing is pickled)."""
        if not self.enabled:
            return [value]
        data = torch.frombuffer(bytearray(json.dumps(value).encode()), dtype=torch.uint8)
        return [json.loads(bytes(row[0].tolist()).decode()) for row in self.gather_rows(data.unsqueeze(0))]

    def broadcast_(self, tensors: Iterable[torch.Tensor], src: int = 0) -> None:
        """Overwrite ``tensors`` on every rank with rank ``src``'s, in place (e.g. weights that
        rank 0 alone read from a file)."""
        if not self.enabled:
            return
        for t in tensors:
            dist.broadcast(t.data, src)

    def average_gradients(self, parameters) -> None:
        """Average the gradients of ``parameters`` over the ranks (one all-reduce): for a
        network that DDP does not wrap, such as a hook's discriminator."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not self.enabled or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """This process's device: a CUDA process under torchrun takes the GPU of its local rank."""
    return torch.device("cuda", ctx.local_rank) if ctx.enabled and device.type == "cuda" else device


@contextmanager
def distributed(device: torch.device) -> Iterator[tuple[DistContext, torch.device]]:
    """The ranks (one process unless started by torchrun) and this process's device, for a
    command that is not training (``vaezoo eval``); the process group is closed after."""
    ctx = init_distributed(device.type)
    try:
        yield ctx, rank_device(device, ctx)
    finally:
        ctx.close()


def init_distributed(device_type: str) -> DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)   # NCCL's collectives (a barrier too) use the current GPU
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank)
