"""Posterior means and log-variances of many examples, with the labels their batches carry.

Shared by `vaezoo encode`, `vaezoo latent-map` and the GMM sampler: a split is read in
evaluation order (no shuffling), optionally cut at ``max_examples``. `vaezoo encode` writes
its rows to the file as they come (``encode_to_file``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from vaezoo.core.batches import Batch, batch_labels, to_device
from vaezoo.core.data import batches_in, split_batches
from vaezoo.core.errors import InputError
from vaezoo.core.progress import progress
from vaezoo.core.tensor_stream import TensorStream

NOTHING = "nothing to encode: the split (or the list of inputs) is empty"


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


def encoded_rows(vae, batch: Batch) -> dict[str, torch.Tensor]:
    """One batch's rows on the CPU: "mean", "logvar", and when they apply "point" (an IAF
    posterior's), "label" (the batch's integer classes) and "condition" (a conditional model's)."""
    rows: dict[str, torch.Tensor] = {}
    if vae.condition is not None:
        rows["condition"] = vae.conditions(batch).cpu()
    q = vae.encode(batch)
    rows["mean"], rows["logvar"] = q.mean.float().cpu(), q.logvar.float().cpu()
    if q.point is not q.mean:
        rows["point"] = q.point.float().cpu()
    label = batch_labels(batch)
    if label is not None:
        rows["label"] = label.long().cpu()
    return rows


@torch.no_grad()
def encode_batches(vae, batches: Iterable[Batch], device, *, total: int | None = None) -> Latents:
    columns: dict[str, list[torch.Tensor]] = {}
    count = 0
    for batch in progress(batches, desc="encoding", total=total):
        for name, rows in encoded_rows(vae, to_device(batch, device)).items():
            columns.setdefault(name, []).append(rows)
        count += 1
    if not count:
        raise InputError(NOTHING)
    cat = {name: torch.cat(parts) for name, parts in columns.items()}
    # Labels count only when every batch had them; a partial column would misalign.
    label = cat["label"] if len(columns.get("label", [])) == count else None
    return Latents(cat["mean"], cat["logvar"], label, cat.get("point"), cat.get("condition"))


@torch.no_grad()
def encode_to_file(vae, batches: Iterable[Batch], device, path: Path, metadata: dict[str, str], *,
                   total: int | None = None) -> tuple[int, int]:
    """``encode_batches`` written to ``path`` as it goes (a safetensors file of "mean", "logvar",
    and "label" and "condition" as they apply), so memory holds one batch. Returns the
    number of rows and of latent dimensions. Nothing is written when there is nothing to encode."""
    labelled = True
    with TensorStream(path, metadata) as out:
        for batch in progress(batches, desc="encoding", total=total):
            rows = encoded_rows(vae, to_device(batch, device))
            rows.pop("point", None)
            # Labels count only when every batch has them: the first batch without drops the column.
            labelled = labelled and "label" in rows
            if not labelled:
                rows.pop("label", None)
                out.drop("label")
            out.append(rows)
        if not out.rows("mean"):
            raise InputError(NOTHING)
        shape = out.rows("mean"), out.row_shape("mean")[0]
        out.close()
    return shape

def encode_split(run, split: str, max_examples: int | None = None) -> Latents:
    """Encode the first ``max_examples`` (all when None) of ``split`` with the run's model."""
    size = run.recipe.eval.batch_size
    return encode_batches(run.vae, split_batches(run.modality, split, size, max_examples), run.device,
                          total=batches_in(run.modality, split, size, max_examples))
