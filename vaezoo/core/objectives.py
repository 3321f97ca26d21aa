"""Training objectives: the beta-ELBO with free bits, and the k-sample IWAE bound.

Both return an ``ObjectiveOutput`` whose ``loss`` is a scalar to minimise and whose
per-example fields (``elbo``, ``reconstruction``, ``kl``) are in nats, for logging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vaezoo.core.batches import Batch, repeat_batch
from vaezoo.core.distributions import DiagonalGaussian

if TYPE_CHECKING:
    from vaezoo.core.model import VAE


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor            # scalar minimised by the optimiser
    bound: torch.Tensor           # [N] the per-example objective actually optimised
    elbo: torch.Tensor            # [N] plain ELBO (beta = 1, no free bits), single-sample
    reconstruction: torch.Tensor  # [N] log p(x|z) at a posterior sample
    kl: torch.Tensor              # [N] KL(q(z|x) || p(z)), closed form
    kl_per_dim: torch.Tensor      # [D] batch mean of the KL of each latent dimension


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Batch-mean KL with a floor of ``free_bits`` nats per dimension (Kingma et al. 2016).

    ``kl_per_dim`` is ``[N, D]``. Below the floor a dimension contributes the constant floor,
    so the optimiser is not pushed to close it further.
    """
    mean_kl = kl_per_dim.mean(0)
    if free_bits > 0:
        mean_kl = mean_kl.clamp(min=free_bits)
    return mean_kl.sum()


def elbo_objective(vae: "VAE", batch: Batch, *, beta: float = 1.0, free_bits: float = 0.0) -> ObjectiveOutput:
    """-(E_q[log p(x|z)] - beta * KL) with one reparameterised sample and the closed-form KL."""
    q = vae.encode(batch)
    z = q.rsample()
    rec = vae.decode(z).log_prob(batch["x"], batch.get("mask"))
    kl_dim = q.kl_per_dim()
    kl = kl_dim.sum(-1)
    loss = -rec.mean() + beta * free_bits_kl(kl_dim, free_bits)
    elbo = rec - kl
    return ObjectiveOutput(loss, rec - beta * kl, elbo, rec, kl, kl_dim.mean(0))


def log_importance_weights(
    vae: "VAE", batch: Batch, k: int, *, posterior: DiagonalGaussian | None = None, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """log w = log p(x|z) + beta * (log p(z) - log q(z|x)) for ``k`` posterior samples.

    Returns ``(log_w, log_px)``, each ``[k, N]``. Decodes all ``k * N`` latents in one call.
    """
    q = posterior if posterior is not None else vae.encode(batch)
    z = q.rsample((k,))                                   # [k, N, D]
    n = z.shape[1]
    repeated = repeat_batch(batch, k)
    log_px = vae.decode(z.reshape(k * n, -1)).log_prob(repeated["x"], repeated.get("mask")).view(k, n)
    log_ratio = vae.prior.log_prob(z) - q.log_prob(z)
    return log_px + beta * log_ratio, log_px


def iwae_objective(vae: "VAE", batch: Batch, *, k: int = 5, beta: float = 1.0) -> ObjectiveOutput:
    """The k-sample importance-weighted bound (Burda et al. 2016).

    With beta != 1 the prior/posterior log-ratio is weighted by beta, which reduces to the
    beta-ELBO at k = 1.
    """
    q = vae.encode(batch)
    log_w, log_px = log_importance_weights(vae, batch, k, posterior=q, beta=beta)
    bound = torch.logsumexp(log_w, 0) - math.log(k)
    kl_dim = q.kl_per_dim()
    kl = kl_dim.sum(-1)
    rec = log_px[0]
    return ObjectiveOutput(-bound.mean(), bound, rec - kl, rec, kl, kl_dim.mean(0))
