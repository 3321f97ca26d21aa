"""The full evaluation of one split of a run: the core's estimators plus the modality's own metrics."""

from __future__ import annotations

from typing import Iterable

import torch

from vaezoo.core.batches import Batch
from vaezoo.core.data import batches_in, split_batches
from vaezoo.core.estimators import EvalResult, evaluate
from vaezoo.core.progress import progress


def evaluate_split(modality, vae, split: str, *, device, iw_samples: int | None = None,
                   max_examples: int | None = None, batch_size: int | None = None, show_progress: bool = True) -> EvalResult:
    """The full evaluation of one split: core estimators plus the modality's extra metrics,
    both over the same first ``max_examples`` examples."""
    cfg = modality.recipe.eval
    size = batch_size or cfg.batch_size
    k = cfg.iw_samples if iw_samples is None else iw_samples
    limit = max_examples if max_examples is not None else (cfg.max_examples or None)
    batches: Iterable[Batch] = split_batches(modality, split, size, limit)
    if show_progress:
        batches = progress(batches, desc=f"evaluating {split} (k={k})", total=batches_in(modality, split, size, limit))
    result = evaluate(vae, batches, iw_samples=k, device=device, chunk_size=cfg.chunk_size, seed=modality.recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(modality.recipe.seed)
        result.extra = modality.extra_metrics(vae, split_batches(modality, split, size, limit), result.as_dict())
    return result
