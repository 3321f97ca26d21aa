"""Posteriors q(z|x): the diagonal Gaussian the encoder gives, and an inverse autoregressive
flow on top of it (IAF, Kingma et al. 2016).

An IAF posterior draws z0 from the encoder's diagonal Gaussian q0(z|x), then applies T
autoregressive steps, each a MADE fed with z and the encoder's context vector:

    m, s = MADE_t(z, h);  sigma = sigmoid(s);  z <- sigma * z + (1 - sigma) * m

(the numerically stable form of the paper's ``IAFLayer``), reversing the order of the
dimensions between steps. Each step's Jacobian is triangular, so
``log q(z_T|x) = log q0(z0|x) - sum_t sum_d log sigma_t,d``. The density is known for the
flow's own samples (``rsample_with_log_prob``), not for an arbitrary z, so every bound uses
those samples with their log-densities.

``[posterior] kind`` of a recipe names one of ``POSTERIORS``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vaezoo.core.distributions import DiagonalGaussian

POSTERIORS = ("diagonal", "iaf")


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE, Germain et al. 2015)."""

    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADEStep(nn.Module):
    """One autoregressive transform: (m, s) of output d depend on z_<d (in the step's order)
    and on the context h, through one masked hidden layer."""

    def __init__(self, dim: int, hidden: int, context: int, reverse: bool):
        super().__init__()
        order = torch.arange(dim).flip(0) if reverse else torch.arange(dim)      # degree of each input
        hidden_degree = torch.arange(hidden) % max(1, dim - 1)                   # degrees 0 .. D-2
        self.register_buffer("order", order)
        self.hidden = MaskedLinear(dim, hidden, (hidden_degree[:, None] >= order[None, :]).float())
        self.context = nn.Linear(context, hidden)
        out_mask = (order[:, None] > hidden_degree[None, :]).float()             # strictly autoregressive
        self.m = MaskedLinear(hidden, dim, out_mask)
        self.s = MaskedLinear(hidden, dim, out_mask)
        # Start close to the identity: m = 0 and sigma = sigmoid(2) ~ 0.88 everywhere.
        for layer, bias in ((self.m, 0.0), (self.s, 2.0)):
            nn.init.zeros_(layer.weight)
            nn.init.constant_(layer.bias, bias)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed z and log|det| of the step, ``[..., D]`` and ``[...]``."""
        a = torch.relu(self.hidden(z) + self.context(h))
        sigma = torch.sigmoid(self.s(a))
        return sigma * z + (1 - sigma) * self.m(a), torch.log(sigma).sum(-1)


class InverseAutoregressiveFlow(nn.Module):
    def __init__(self, dim: int, steps: int, hidden: int, context: int):
        super().__init__()
        self.steps = nn.ModuleList(MADEStep(dim, hidden, context, reverse=t % 2 == 1) for t in range(steps))

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for step in self.steps:
            z, step_log_det = step(z, h)
            log_det = log_det + step_log_det
        return z, log_det


class IAFPosterior:
    """q(z|x) as an IAF on the encoder's Gaussian ``base``, with context ``h`` ``[N, C]``.

    ``mean`` and ``logvar`` are the base Gaussian's (latent maps, active units and the mutual
    information use them); ``point`` is the flow applied to the base mean, the one z that
    stands for the posterior in reconstructions and interpolations."""

    def __init__(self, base: DiagonalGaussian, flow: InverseAutoregressiveFlow, context: torch.Tensor):
        self.base, self.flow, self.context = base, flow, context

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    @property
    def logvar(self) -> torch.Tensor:
        return self.base.logvar

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def point(self) -> torch.Tensor:
        return self.flow(self.base.mean, self.context)[0]

    def rsample_with_log_prob(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        z0, log_q0 = self.base.rsample_with_log_prob(sample_shape)
        h = self.context.expand(*z0.shape[:-1], self.context.shape[-1])
        z, log_det = self.flow(z0, h)
        return z, log_q0 - log_det

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return self.rsample_with_log_prob(sample_shape)[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("an IAF posterior knows the density of its own samples only: use rsample_with_log_prob")

    def kl_per_dim(self) -> torch.Tensor:
        raise NotImplementedError("an IAF posterior has no closed-form KL; the ELBO estimates it by Monte Carlo")


def build_flow(options: Any, dim: int) -> InverseAutoregressiveFlow | None:
    """The flow ``options.kind`` asks for (the recipe's ``[posterior]`` section), or None for
    the plain diagonal Gaussian. Its context is the encoder's ``(mean, logvar)`` (2 D), or
    the encoder's own context vector when ``options.context_size`` says how long it is."""
    kind = getattr(options, "kind", "diagonal")
    if kind == "diagonal":
        return None
    if kind == "iaf":
        context = options.context_size or 2 * dim
        return InverseAutoregressiveFlow(dim, options.flow_steps, options.flow_hidden, context)
    raise ValueError(f"unknown posterior {kind!r}; known: {', '.join(POSTERIORS)}")
