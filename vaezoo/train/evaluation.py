"""The evaluation of one split: the core's estimators plus the modality's own metrics,
shared out over the ranks of a distributed run with the same figures as one process.

The split's first ``max_examples`` examples are cut into blocks of ``batch_size``
consecutive examples; rank r of W evaluates blocks r, r + W, r + 2W ... (no example twice,
none left out, no padding: a rank may get one block fewer). A block's random draws (the
ELBO's z, the importance samples) come from a seed of (run seed, block index) alone, and a
block comes down to sums (the ELBO terms, the KL of every dimension) and the first two
moments of its posterior means. Every rank gathers every block's row and combines them in
block order, and the aggregate posterior of the first ``MI_MAX_EXAMPLES`` examples (for the
mutual information) is gathered in example order; so every figure is the same, bit for
bit, whatever the number of processes (for one batch size), and the same on every rank.

The modality's extra metrics take the whole split's batches (their reduction is the
plugin's own): rank 0 computes them alone, for the files it writes.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from vaezoo.core.batches import Batch, to_device
from vaezoo.core.data import dataset_length, examples_at, split_batches
from vaezoo.core.estimators import MI_MAX_EXAMPLES, EvalResult, block_figures, block_result, block_seed, evaluation_mode
from vaezoo.core.progress import progress
from vaezoo.train.distributed import DistContext


def eval_blocks(n: int, size: int, max_examples: int | None = None) -> list[range]:
    """The example indices of each evaluation block: consecutive runs of ``size`` over the
    first ``max_examples`` of ``n`` examples (all when None or 0); the last may be shorter."""
    end = min(n, max_examples) if max_examples else n
    return [range(start, min(start + size, end)) for start in range(0, end, size)]


class ShardedEvaluation:
    """The evaluation of ``dataset`` on this rank's blocks. Built once, it serves every call
    (each validation of a run): with ``num_workers`` its loader keeps its worker processes
    between calls."""

    def __init__(self, dataset: Dataset, collate: Callable, batch_size: int, max_examples: int | None, ctx: DistContext,
                 *, num_workers: int = 0):
        self.ctx = ctx
        self.blocks = eval_blocks(dataset_length(dataset), batch_size, max_examples)
        self.mine = range(ctx.rank, len(self.blocks), ctx.world_size)
        indices = [list(self.blocks[b]) for b in self.mine]
        self._batches: Callable[[], Iterable[Batch]]
        if num_workers and indices:
            loader = DataLoader(dataset, batch_sampler=indices, collate_fn=collate, num_workers=num_workers,
                                persistent_workers=True)
            self._batches = lambda: loader
        else:
            self._batches = lambda: (examples_at(dataset, collate, i) for i in indices)

    def run(self, vae, *, iw_samples: int, device, seed: int, chunk_size: int = 100, desc: str | None = None) -> EvalResult:
        """ELBO, KL, AU and MI over every rank's blocks, and the IW-NLL when ``iw_samples > 0``;
        every rank must call it. ``desc``: a progress bar on rank 0."""
        rows, posteriors = self.local(vae, iw_samples=iw_samples, device=device, seed=seed, chunk_size=chunk_size,
                                      desc=desc)
        return self.combine(self.ctx.gather_rows(rows), self.ctx.gather_rows(posteriors), iw_samples=iw_samples,
                            seed=seed)

    def local(self, vae, *, iw_samples: int, device, seed: int, chunk_size: int = 100,
              desc: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share: a row of sums per block (float64, in block order), and the
        posteriors (mean, log-variance) of its examples among the first MI_MAX_EXAMPLES."""
        batches: Iterable[Batch] = self._batches()
        if desc is not None and self.ctx.is_main:
            batches = progress(batches, desc=desc, total=len(self.mine))
        rows, posteriors = [], []
        with evaluation_mode(vae, device, seed):
            for b, batch in zip(self.mine, batches):
                torch.manual_seed(block_seed(seed, b))   # the block's draws, wherever it runs
                row, posterior = block_figures(vae, to_device(batch, device), iw_samples, chunk_size, keep=self._kept(b))
                rows.append(row)
                posteriors.append(posterior)
        if not rows:
            return torch.zeros(0, 0, dtype=torch.float64), torch.zeros(0, 0)
        return torch.stack(rows), torch.cat(posteriors)

    def combine(self, rows: list[torch.Tensor], posteriors: list[torch.Tensor], *, iw_samples: int,
                seed: int) -> EvalResult:
        """The figures from every rank's ``local`` share, in rank order; the same on every rank."""
        world = len(rows)
        table = torch.zeros(len(self.blocks), max(part.shape[1] for part in rows), dtype=torch.float64)
        per_block: dict[int, torch.Tensor] = {}
        for rank, (part, posterior) in enumerate(zip(rows, posteriors)):
            blocks = range(rank, len(self.blocks), world)
            if len(part):
                table[rank::world] = part
            kept = [self._kept(b) for b in blocks]
            if sum(kept):
                per_block.update((b, p) for b, p in zip(blocks, posterior.split(kept)) if len(p))
        if not per_block:
            raise ValueError("evaluation got no examples")
        return block_result(table, torch.cat([per_block[b] for b in sorted(per_block)]), iw_samples, seed)

    def _kept(self, b: int) -> int:
        """How many of block ``b``'s examples join the aggregate posterior (the first MI_MAX_EXAMPLES do)."""
        return min(len(self.blocks[b]), max(0, MI_MAX_EXAMPLES - self.blocks[b].start))


def evaluate_split(modality, vae, split: str, *, device, iw_samples: int | None = None,
                   max_examples: int | None = None, batch_size: int | None = None, show_progress: bool = True,
                   ctx: DistContext | None = None) -> EvalResult:
    """The full evaluation of one split: core estimators plus the modality's extra metrics,
    both over the same first ``max_examples`` examples. Under torchrun (``ctx``) every rank
    calls it and evaluates its share; the extra metrics are rank 0's alone (empty elsewhere)."""
    ctx = ctx or DistContext()
    cfg = modality.recipe.eval
    size = batch_size or cfg.batch_size
    k = cfg.iw_samples if iw_samples is None else iw_samples
    limit = max_examples if max_examples is not None else (cfg.max_examples or None)
    evaluation = ShardedEvaluation(modality.dataset(split), modality.collate, size, limit, ctx)
    result = evaluation.run(vae, iw_samples=k, device=device, seed=modality.recipe.seed, chunk_size=cfg.chunk_size,
                            desc=f"evaluating {split} (k={k})" if show_progress else None)
    if ctx.is_main:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(modality.recipe.seed)
            result.extra = modality.extra_metrics(vae, split_batches(modality, split, size, limit), result.as_dict())
    return result

