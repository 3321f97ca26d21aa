"""The batch convention shared by the core and every plugin.

A batch is a ``dict``: ``"x"`` (required) holds the data the decoder models, with the
batch on dimension 0; ``"mask"`` (optional, broadcastable to the likelihood's elements,
1 = observed) marks missing values or padding; ``"label"`` (optional, an integer tensor
``[N]``) is the class of each example, which `vaezoo latent-map` colours and clusters by;
any other key (lengths, raw text) is the plugin's own and rides along. Values are tensors
or lists with one item per example.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Batch = dict[str, Any]


def as_batch(obj: Any) -> Batch:
    """Accept a bare tensor as ``{"x": tensor}``; check that a dict has ``"x"``."""
    if isinstance(obj, torch.Tensor):
        return {"x": obj}
    if isinstance(obj, dict) and "x" in obj:
        return obj
    raise TypeError(f"a batch must be a tensor or a dict with key 'x', got {type(obj).__name__}")


def batch_labels(batch: Batch) -> torch.Tensor | None:
    """The batch's ``"label"`` tensor when it holds one integer class per example, else None."""
    label = batch.get("label")
    if isinstance(label, torch.Tensor) and label.dim() == 1 and not label.is_floating_point() and not label.is_complex():
        return label
    return None


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> Batch:
    return {k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    return map_tensors(lambda t: t.to(device, non_blocking=True), batch)


def pin_memory(batch: Batch) -> Batch:
    """The batch with its tensors in page-locked host memory, which a CUDA device copies from
    without blocking the host (``to_device`` copies with ``non_blocking=True``)."""
    return map_tensors(lambda t: t.pin_memory(), batch)


def channels_last(batch: Batch) -> Batch:
    """The batch with its 4-D float tensors (images ``[N, C, H, W]``) in channels-last memory
    format, what a channels-last conv model reads fastest; other tensors as they are."""
    return {k: v.contiguous(memory_format=torch.channels_last)
            if isinstance(v, torch.Tensor) and v.dim() == 4 and v.is_floating_point() else v
            for k, v in batch.items()}


def batch_size(batch: Batch) -> int:
    return len(batch["x"])


def repeat_batch(batch: Batch, k: int) -> Batch:
    """Stack ``k`` copies along dim 0, sample-major: row ``i * N + n`` is example ``n``."""
    if k == 1:
        return batch
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.repeat(k, *([1] * (value.dim() - 1)))
        elif isinstance(value, list):
            out[key] = value * k
        else:
            out[key] = value
    return out


def slice_batch(batch: Batch, index: slice | list[int] | torch.Tensor) -> Batch:
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[index]
        elif isinstance(value, list):
            ids = range(len(value))[index] if isinstance(index, slice) else [int(i) for i in index]
            out[key] = [value[i] for i in ids]
        else:
            out[key] = value
    return out

