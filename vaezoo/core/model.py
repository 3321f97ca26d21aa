"""The VAE: a plugin's encoder and decoder around the core's posterior and prior.

- ``encoder(batch) -> (mean, logvar)``, each ``[N, D]``: the parameters of q(z|x).
- ``decoder(z) -> distribution`` for ``z`` of shape ``[M, D]``: p(x|z), an object with
  ``log_prob(x, mask)``, ``mean`` and ``sample()`` (see ``vaezoo.core.likelihoods``).

The VAE knows no training objective: ``vaezoo.core.objectives`` wraps it (and
DistributedDataParallel wraps the objective), so a new objective needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from vaezoo.core.batches import Batch
from vaezoo.core.distributions import DiagonalGaussian, StandardNormal


@dataclass
class VAEOutput:
    """One pass x -> q(z|x) -> z -> p(x|z), what ``VAE.forward`` returns."""

    posterior: DiagonalGaussian   # q(z|x): mean and logvar [N, D]
    z: torch.Tensor               # [N, D], one reparameterised draw from the posterior
    likelihood: Any               # p(x|z): the decoder's distribution (log_prob, mean, sample)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line from ``a`` to ``b``; ``a, b`` are ``[N, D]``, ``t`` is ``[S]`` -> ``[N, S, D]``."""
    t = t.view(1, -1, 1)
    return (1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985); falls back to lerp for (anti)parallel endpoints."""
    a_unit = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b_unit = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    omega = torch.acos((a_unit * b_unit).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)).view(-1, 1, 1)  # [N,1,1]
    t = t.view(1, -1, 1)
    sin_omega = torch.sin(omega)
    nearly_parallel = sin_omega.abs() < 1e-4
    wa = torch.where(nearly_parallel, 1 - t, torch.sin((1 - t) * omega) / sin_omega)
    wb = torch.where(nearly_parallel, t, torch.sin(t * omega) / sin_omega)
    return wa * a.unsqueeze(1) + wb * b.unsqueeze(1)


class VAE(nn.Module):
    """A plugin's encoder and decoder with a standard normal prior over ``latent_dim`` dimensions.

    Attributes:
        encoder: ``encoder(batch) -> (mean, logvar)``, each ``[N, D]``.
        decoder: ``decoder(z [M, D]) -> distribution`` over x (``log_prob(x, mask) -> [M]``,
            ``mean``, ``sample()``).
        latent_dim: D, the size of z.
        prior: p(z), a ``StandardNormal(latent_dim)``.

    ``forward(batch)`` returns a ``VAEOutput`` (posterior, one draw z, p(x|z));
    ``encode``, ``decode``, ``sample``, ``reconstruct`` and ``interpolate`` are the uses.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.prior = StandardNormal(latent_dim)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        mean, logvar = self.encoder(batch)
        if mean.shape[-1] != self.latent_dim:
            raise ValueError(f"encoder returned {mean.shape[-1]} latent dimensions, the recipe says {self.latent_dim}")
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor):
        return self.decoder(z)

    def forward(self, batch: Batch) -> VAEOutput:
        """Encode, draw one reparameterised z, decode."""
        q = self.encode(batch)
        z = q.rsample()
        return VAEOutput(q, z, self.decode(z))

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None):
        """Decode ``n`` latents drawn from N(0, temperature^2 I). Returns ``(z, p(x|z))``."""
        p = self._param()
        z = self.prior.sample(n, temperature=temperature, generator=generator, device=p.device, dtype=p.dtype)
        return z, self.decode(z)

    @torch.no_grad()
    def reconstruct(self, batch: Batch, *, use_mean: bool = True):
        """Decode the posterior mean (or one posterior sample). Returns ``(z, p(x|z))``."""
        q = self.encode(batch)
        z = q.mean if use_mean else q.rsample()
        return z, self.decode(z)

    @torch.no_grad()
    def interpolate(
        self, batch_a: Batch, batch_b: Batch, *, steps: int = 8, method: Literal["linear", "spherical"] = "linear"
    ):
        """Walk between the posterior means of paired examples.

        Returns ``(z, p(x|z))`` with ``z`` of shape ``[N * steps, D]``, row-major: the ``steps``
        points of pair 0 first, end points included.
        """
        za, zb = self.encode(batch_a).mean, self.encode(batch_b).mean
        t = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype)
        path = slerp(za, zb, t) if method == "spherical" else lerp(za, zb, t)
        z = path.reshape(-1, self.latent_dim)
        return z, self.decode(z)
