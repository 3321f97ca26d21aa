"""Encoder and decoder MLPs for rows of mixed columns.

The encoder reads only what is observed: reals standardised, categoricals one-hot, every
missing entry zeroed, with the mask itself appended so that "missing" and "observed 0"
differ (HI-VAE's input layer). The decoder emits every column's parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import vaezoo
from vaezoo.nn import append_condition, mlp

from vaezoo_tabular.likelihood import MixedColumns


def features(x: torch.Tensor, mask: torch.Tensor, real: list[int], categorical: list[int], sizes: list[int]) -> torch.Tensor:
    """[N, R + sum K + C]: observed reals, one-hot observed categories, and the mask."""
    seen = mask.bool()
    parts = [torch.where(seen[:, real], x[:, real], torch.zeros_like(x[:, real]))]
    for j, k in zip(categorical, sizes):
        code = torch.where(seen[:, j], x[:, j], torch.zeros_like(x[:, j])).round().long().clamp(0, k - 1)
        parts.append(F.one_hot(code, k).to(x.dtype) * mask[:, j : j + 1])
    return torch.cat(parts + [mask.to(x.dtype)], dim=-1)


class Encoder(nn.Module):
    """``condition_dim``: the size of a conditional recipe's embedded class, appended to the features."""

    def __init__(self, real, categorical, sizes, hidden: list[int], latent: int, condition_dim: int = 0):
        super().__init__()
        self.real, self.categorical, self.sizes = real, categorical, sizes
        width = len(real) + sum(sizes) + len(real) + len(categorical) + condition_dim
        self.body = mlp([width, *hidden, 2 * latent], "relu")

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(append_condition(features(batch["x"], batch["mask"], self.real, self.categorical, self.sizes),
                                       batch))
        mean, logvar = h.chunk(2, dim=-1)
        return mean, logvar


class Decoder(nn.Module):
    """z [M, latent] -> MixedColumns (``latent``: z and a conditional recipe's class embedding);
    the real columns' scale is one learned value per column ("column") or an output per row
    ("row", HI-VAE's heteroscedastic choice)."""

    def __init__(self, real, categorical, sizes, hidden: list[int], latent: int, scale: str, min_log_sd: float):
        super().__init__()
        self.real, self.categorical, self.sizes, self.scale = real, categorical, sizes, scale
        self.min_log_sd = min_log_sd
        reals = len(real) * (2 if scale == "row" else 1)
        self.body = mlp([latent, *hidden, reals + sum(sizes)], "relu")
        self.log_sd = nn.Parameter(torch.zeros(len(real))) if scale == "column" else None

    def forward(self, z: torch.Tensor) -> MixedColumns:
        h = self.body(z)
        r = len(self.real)
        mean = h[:, :r]
        if self.scale == "row":
            log_sd, h = h[:, r : 2 * r], h[:, 2 * r :]
        else:
            log_sd, h = self.log_sd, h[:, r:]
        # a soft floor on the scale: a Gaussian may not collapse onto the few rows it has
        # seen (a hard clamp would also stop the gradient of a scale that went below it)
        log_sd = self.min_log_sd + F.softplus(log_sd - self.min_log_sd)
        cats = [vaezoo.Categorical(logits) for logits in h.split(self.sizes, dim=-1)] if self.sizes else []
        return MixedColumns(vaezoo.Gaussian(mean, log_sd), self.real, cats, self.categorical)
