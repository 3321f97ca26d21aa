"""Posterior means and log-variances of many examples, with the labels their batches carry.

Shared by `vaezoo encode`, `vaezoo latent-map` and `vaezoo score`: a split is read in
evaluation order (no shuffling), optionally cut at ``max_examples``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from vaezoo.core.batches import Batch, batch_labels, to_device
from vaezoo.core.data import batches_in, split_batches
from vaezoo.core.errors import InputError
from vaezoo.core.progress import progress


@dataclass
class Latents:
    mean: torch.Tensor                 # [N, D] posterior means (of the base Gaussian, for an IAF posterior)
    logvar: torch.Tensor               # [N, D] posterior log-variances
    label: torch.Tensor | None = None  # [N] integer classes, when every batch carried "label"
    point: torch.Tensor | None = None  # [N, D] the z that stands for each posterior, when it is not the mean (IAF)
    condition: torch.Tensor | None = None  # [N] each example's class, for a conditional model

    def __len__(self) -> int:
        return len(self.mean)

    @property
    def points(self) -> torch.Tensor:
        """The z the decoder reads for each example: its posterior's point (the mean, or for an
        IAF posterior the flow of the base mean)."""
        return self.mean if self.point is None else self.point


@torch.no_grad()
def encode_batches(vae, batches: Iterable[Batch], device, *, total: int | None = None) -> Latents:
    means, logvars, labels, points, conditions = [], [], [], [], []
    count = 0
    for batch in progress(batches, desc="encoding", total=total):
        batch = to_device(batch, device)
        q = vae.encode(batch)
        if vae.condition is not None:
            conditions.append(vae.conditions(batch).cpu())
        means.append(q.mean.float().cpu())
        logvars.append(q.logvar.float().cpu())
        if q.point is not q.mean:
            points.append(q.point.float().cpu())
        label = batch_labels(batch)
        if label is not None:
            labels.append(label.long().cpu())
        count += 1
    if not means:
        raise InputError("nothing to encode: the split (or the list of inputs) is empty")
    # Labels count only when every batch had them; a partial column would misalign.
    label = torch.cat(labels) if len(labels) == count else None
    return Latents(torch.cat(means), torch.cat(logvars), label, torch.cat(points) if points else None,
                   torch.cat(conditions) if conditions else None)


def encode_split(run, split: str, max_examples: int | None = None) -> Latents:
    """Encode the first ``max_examples`` (all when None) of ``split`` with the run's model."""
    size = run.recipe.eval.batch_size
    return encode_batches(run.vae, split_batches(run.modality, split, size, max_examples), run.device,
                          total=batches_in(run.modality, split, size, max_examples))
