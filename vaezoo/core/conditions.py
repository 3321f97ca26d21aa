"""The class condition of a conditional VAE (Sohn et al. 2015): c -> a learned embedding.

The VAE reads each example's class from its batch (``batch[key]``, integers 0 .. classes-1),
embeds it, appends the embedding to z before the decoder (p(x|z, c)) and, when the recipe
asks, hands it to the encoder as ``batch["condition"]`` (q(z|x, c)). The prior stays p(z):
a sample of class c is ``decode(z ~ p(z), c)``.

Class ids are checked here, once per batch, so a label outside the range is one clear error
instead of an index error deep in the embedding (or a device-side assert on a GPU).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from vaezoo.core.errors import InputError

#: the batch key under which the encoder receives the embedded condition [N, E]
ENCODER_KEY = "condition"


class ClassCondition(nn.Module):
    """``classes`` learned embeddings of size ``dim``, read from ``batch[key]``.

    Attributes:
        key: the batch key of the class ids.
        classes: how many classes.
        names: index i -> name (the ids as strings when the data has no names).
        to_encoder: whether the encoder receives the embedding too.
    """

    def __init__(self, classes: int, dim: int, *, key: str = "label", names: Sequence[str] = (),
                 to_encoder: bool = True):
        super().__init__()
        if classes < 1:
            raise ValueError(f"a condition needs at least one class, got {classes}")
        if names and len(names) != classes:
            raise ValueError(f"{len(names)} class names for {classes} classes")
        self.key = key
        self.classes = classes
        self.dim = dim
        self.names = list(names) if names else [str(i) for i in range(classes)]
        self.to_encoder = to_encoder
        self.embedding = nn.Embedding(classes, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` [M] (int64) -> embeddings [M, E]."""
        return self.embedding(ids)

    def ids_of(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's class ids [N], checked: present, integers, one per example, in range."""
        ids = batch.get(self.key)
        if ids is None:
            keys = ", ".join(sorted(batch)) or "none"
            raise InputError(f"this model is conditional on the batch key {self.key!r}, but the batch has none "
                             f"(its keys: {keys}); give the inputs' class (--condition), or load data with labels")
        return self.check_ids(ids, f"batch key {self.key!r}")

    def check_ids(self, ids: Any, where: str) -> torch.Tensor:
        """``ids`` as an int64 tensor [M] after checking its type, shape and range."""
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            kind = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise InputError(f"{where}: class ids must be an integer tensor, got {kind}")
        if ids.dim() != 1:
            raise InputError(f"{where}: class ids must be one per example (shape [N]), got shape {list(ids.shape)}")
        outside = (ids < 0) | (ids >= self.classes)
        if bool(outside.any()):                  # one host sync per batch
            bad = ids[outside][0].item()
            raise InputError(f"{where}: class {bad} is outside the model's {self.classes} classes "
                             f"(0 .. {self.classes - 1})")
        return ids.long()

    def summary(self) -> dict[str, Any]:
        """What eval.json records about the condition: its figures are of log p(x|c)."""
        return {"key": self.key, "classes": self.classes, "names": self.names, "encoder": self.to_encoder}

    def labelled(self, batch: dict[str, Any], class_id: int) -> dict[str, Any]:
        """A copy of ``batch`` whose every example is of class ``class_id`` (inputs read from the
        command line carry no class; ``--condition`` gives them one)."""
        n = len(batch["x"]) if "x" in batch else 0
        device = batch["x"].device if isinstance(batch.get("x"), torch.Tensor) else None
        return {**batch, self.key: torch.full((n,), class_id, dtype=torch.long, device=device)}

    def lookup(self, name_or_id: str) -> int:
        """A class given by name or by id (as the command line gives it) -> its id; ``InputError``
        lists the classes when it is neither."""
        if name_or_id in self.names:
            return self.names.index(name_or_id)
        text = name_or_id.strip()
        if text.lstrip("-").isdigit() and 0 <= int(text) < self.classes:
            return int(text)
        shown = ", ".join(self.names[:20]) + (f" ... ({self.classes} in all)" if self.classes > 20 else "")
        raise InputError(f"unknown class {name_or_id!r}: this model's classes are {shown} (or ids 0 .. {self.classes - 1})")


def append_condition(features: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """An encoder's features [N, F] with the embedded condition ``batch["condition"]`` [N, E]
    appended, when the batch carries one (a conditional recipe with ``condition.encoder``);
    unchanged otherwise. Size the next layer with ``Modality.encoder_condition_dim``."""
    condition = batch.get(ENCODER_KEY)
    if condition is None:
        return features
    return torch.cat([features, condition.to(features.dtype)], dim=-1)
