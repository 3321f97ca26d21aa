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
from vaezoo.core.distributions import DiagonalGaussian
from vaezoo.core.posteriors import IAFPosterior, InverseAutoregressiveFlow, build_flow
from vaezoo.core.priors import Prior, StandardNormalPrior, VampPrior, build_prior


@dataclass
class VAEOutput:
    """One pass x -> q(z|x) -> z -> p(x|z), what ``VAE.forward`` returns."""

    posterior: Any                # q(z|x): a DiagonalGaussian or an IAFPosterior
    z: torch.Tensor               # [N, D], one reparameterised draw from the posterior
    likelihood: Any               # p(x|z): the decoder's distribution (log_prob, mean, sample)
    log_q: torch.Tensor | None = None  # [N] log q(z|x) of that draw, when the KL is estimated from it


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
    """A plugin's encoder and decoder with the core's prior and posterior over ``latent_dim``
    dimensions.

    Attributes:
        encoder: ``encoder(batch) -> (mean, logvar)``, each ``[N, D]``; it may return a third
            tensor ``h`` ``[N, C]``, its context vector for an IAF posterior.
        decoder: ``decoder(z [M, D]) -> distribution`` over x (``log_prob(x, mask) -> [M]``,
            ``mean``, ``sample()``).
        latent_dim: D, the size of z.
        prior: p(z), a ``vaezoo.core.priors.Prior`` (standard normal unless one is given).
        flow: the IAF on top of the encoder's Gaussian, or None (``vaezoo.core.posteriors``).

    ``forward(batch)`` returns a ``VAEOutput`` (posterior, one draw z, its log q(z|x) when the
    KL needs it, p(x|z)); ``encode``, ``decode``, ``sample``, ``reconstruct`` and
    ``interpolate`` are the uses.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, *, prior: Prior | None = None,
                 flow: InverseAutoregressiveFlow | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        if isinstance(self.prior, VampPrior):
            self.prior.bind(lambda batch: self._gaussian(batch)[:2])
        self.flow = flow

    @property
    def closed_form_kl(self) -> bool:
        """KL(q || p) in closed form, per dimension: a diagonal posterior and a standard prior."""
        return self.flow is None and self.prior.closed_form_kl

    def _gaussian(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        out = self.encoder(batch)
        mean, logvar, context = (out[0], out[1], out[2] if len(out) > 2 else None)
        if mean.shape[-1] != self.latent_dim:
            raise ValueError(f"encoder returned {mean.shape[-1]} latent dimensions, the recipe says {self.latent_dim}")
        return mean, logvar, context

    def encode(self, batch: Batch) -> DiagonalGaussian | IAFPosterior:
        """q(z|x): the encoder's diagonal Gaussian, with the flow on top when there is one."""
        mean, logvar, context = self._gaussian(batch)
        q = DiagonalGaussian(mean, logvar)
        if self.flow is None:
            return q
        if context is None:
            context = torch.cat([mean, logvar], -1)
        return IAFPosterior(q, self.flow, context)

    def decode(self, z: torch.Tensor):
        return self.decoder(z)

    def forward(self, batch: Batch) -> VAEOutput:
        """Encode, draw one reparameterised z (with log q(z|x) unless the KL is closed form), decode."""
        q = self.encode(batch)
        if self.closed_form_kl:
            z, log_q = q.rsample(), None
        else:
            z, log_q = q.rsample_with_log_prob()
        return VAEOutput(q, z, self.decode(z), log_q)

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None):
        """Decode ``n`` latents drawn from the prior, its spread scaled by ``temperature``. Returns ``(z, p(x|z))``."""
        p = self._param()
        z = self.prior.sample(n, temperature=temperature, generator=generator, device=p.device, dtype=p.dtype)
        return z, self.decode(z)

    @torch.no_grad()
    def reconstruct(self, batch: Batch, *, use_mean: bool = True):
        """Decode the posterior's point (its mean; for an IAF, the flow of the base mean) or one
        posterior sample. Returns ``(z, p(x|z))``."""
        q = self.encode(batch)
        z = q.point if use_mean else q.rsample()
        return z, self.decode(z)

    @torch.no_grad()
    def interpolate(
        self, batch_a: Batch, batch_b: Batch, *, steps: int = 8, method: Literal["linear", "spherical"] = "linear"
    ):
        """Walk between the posterior points (means) of paired examples.

        Returns ``(z, p(x|z))`` with ``z`` of shape ``[N * steps, D]``, row-major: the ``steps``
        points of pair 0 first, end points included.
        """
        za, zb = self.encode(batch_a).point, self.encode(batch_b).point
        t = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype)
        path = slerp(za, zb, t) if method == "spherical" else lerp(za, zb, t)
        z = path.reshape(-1, self.latent_dim)
        return z, self.decode(z)


def make_vae(encoder: nn.Module, decoder: nn.Module, latent_dim: int, *, prior: Any = None, posterior: Any = None,
             pseudo_inputs: Any = None) -> VAE:
    """A VAE with the prior and posterior that ``prior`` and ``posterior`` (the recipe's
    ``[prior]`` and ``[posterior]`` sections, or None for the defaults) ask for;
    ``pseudo_inputs(k)`` is the modality's hook for the VampPrior. ``ValueError`` says why a
    choice cannot be built (the caller names the recipe key)."""
    return VAE(encoder, decoder, latent_dim, prior=build_prior(prior, latent_dim, pseudo_inputs),
               flow=build_flow(posterior, latent_dim))
