"""Training objectives: the beta-ELBO with free bits, and the k-sample IWAE bound.

The formulas are functions of a VAE and a batch (``elbo_objective``, ``iwae_objective``),
shared with evaluation and scoring through ``elbo_terms``. For training, an ``Objective``
module wraps the VAE: the trainer (and DistributedDataParallel) call the objective, so every
parameter that takes part in the loss is seen, and the VAE itself knows no objective.
Objectives are looked up by name in ``OBJECTIVES`` (``[objective] kind`` of a recipe);
``register_objective`` adds one.

Every objective returns an ``ObjectiveOutput`` whose ``loss`` is a scalar to minimise and
whose per-example fields (``elbo``, ``reconstruction``, ``kl``) are in nats, for logging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from vaezoo.core.batches import Batch, repeat_batch
from vaezoo.core.distributions import DiagonalGaussian

if TYPE_CHECKING:
    from vaezoo.core.model import VAE


class ObjectiveOutput:
    """What an objective returns. ``loss`` carries the gradients; the per-example figures
    (for logs and scores) are derived on first use, so a training step pays only for the
    ones it reads.

    Attributes:
        loss: scalar minimised by the optimiser.
        reconstruction: ``[N]`` log p(x|z) at a posterior sample.
        kl_terms: ``[N, D]`` KL(q(z_d|x) || p(z_d)) of every example and latent dimension.
        kl: ``[N]`` KL(q(z|x) || p(z)), closed form.
        elbo: ``[N]`` plain ELBO (beta = 1, no free bits), single-sample.
        bound: ``[N]`` the per-example objective actually optimised.
        kl_per_dim: ``[D]`` batch mean of the KL of each latent dimension.
    """

    def __init__(self, loss: torch.Tensor, reconstruction: torch.Tensor, kl_terms: torch.Tensor, *,
                 beta: float = 1.0, bound: torch.Tensor | None = None, kl_per_dim: torch.Tensor | None = None):
        self.loss = loss
        self.reconstruction = reconstruction
        self.kl_terms = kl_terms
        self._beta, self._bound, self._kl_per_dim = beta, bound, kl_per_dim

    @property
    def kl(self) -> torch.Tensor:
        return self.kl_terms.sum(-1)

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl

    @property
    def bound(self) -> torch.Tensor:
        return self._bound if self._bound is not None else self.reconstruction - self._beta * self.kl

    @property
    def kl_per_dim(self) -> torch.Tensor:
        return self._kl_per_dim if self._kl_per_dim is not None else self.kl_terms.mean(0)


@dataclass
class ELBOTerms:
    """The two terms of the ELBO at one posterior sample, per example."""

    posterior: DiagonalGaussian   # q(z|x)
    reconstruction: torch.Tensor  # [N] log p(x|z)
    kl_per_dim: torch.Tensor      # [N, D] KL(q(z_d|x) || p(z_d)), closed form

    @property
    def kl(self) -> torch.Tensor:
        return self.kl_per_dim.sum(-1)

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl


def elbo_terms(vae: "VAE", batch: Batch) -> ELBOTerms:
    """log p(x|z) at one reparameterised sample and the closed-form KL: what training,
    evaluation and scoring all compute."""
    out = vae(batch)
    rec = out.likelihood.log_prob(batch["x"], batch.get("mask"))
    return ELBOTerms(out.posterior, rec, out.posterior.kl_per_dim())


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Batch-mean KL with a floor of ``free_bits`` nats per dimension (Kingma et al. 2016).

    ``kl_per_dim`` is ``[N, D]``. Below the floor a dimension contributes the constant floor,
    so the optimiser is not pushed to close it further.
    """
    return _floored_sum(kl_per_dim.mean(0), free_bits)


def _floored_sum(mean_kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    return (mean_kl_per_dim.clamp(min=free_bits) if free_bits > 0 else mean_kl_per_dim).sum()


def elbo_objective(vae: "VAE", batch: Batch, *, beta: float = 1.0, free_bits: float = 0.0) -> ObjectiveOutput:
    """-(E_q[log p(x|z)] - beta * KL) with one reparameterised sample and the closed-form KL."""
    terms = elbo_terms(vae, batch)
    rec = terms.reconstruction
    mean_kl_per_dim = terms.kl_per_dim.mean(0)        # [D]: the loss's KL term, and the log's
    kl_term = _floored_sum(mean_kl_per_dim, free_bits)
    loss = -rec.mean() + (kl_term if beta == 1.0 else beta * kl_term)   # 1.0 * x is x: one op less per step
    return ObjectiveOutput(loss, rec, terms.kl_per_dim, beta=beta, kl_per_dim=mean_kl_per_dim)


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
    return ObjectiveOutput(-bound.mean(), log_px[0], q.kl_per_dim(), beta=beta, bound=bound)


# -- objectives as modules, by name --------------------------------------------------------------


class Objective(nn.Module):
    """A training objective around a VAE: ``objective(batch, beta=...) -> ObjectiveOutput``.

    Subclasses take ``(vae, options)``, ``options`` being the recipe's ``[objective]``
    section (any object with the attributes they read), and implement ``forward``.
    """

    def __init__(self, vae: "VAE", options: Any = None):
        super().__init__()
        self.vae = vae

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        raise NotImplementedError


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make an objective available as ``[objective] kind = name``."""

    def register(cls: type[Objective]) -> type[Objective]:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is registered twice ({OBJECTIVES[name].__name__}, {cls.__name__})")
        OBJECTIVES[name] = cls
        return cls

    return register


def build_objective(kind: str, vae: "VAE", options: Any = None) -> Objective:
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown objective {kind!r}; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[kind](vae, options)


@register_objective("elbo")
class ELBO(Objective):
    """The beta-ELBO with free bits (``options.free_bits``, 0 when not given)."""

    def __init__(self, vae: "VAE", options: Any = None):
        super().__init__(vae, options)
        self.free_bits = float(getattr(options, "free_bits", 0.0))

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        return elbo_objective(self.vae, batch, beta=beta, free_bits=self.free_bits)


@register_objective("iwae")
class IWAE(Objective):
    """The k-sample IWAE bound (``options.iwae_samples``, 5 when not given)."""

    def __init__(self, vae: "VAE", options: Any = None):
        super().__init__(vae, options)
        self.k = int(getattr(options, "iwae_samples", 5))

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        return iwae_objective(self.vae, batch, k=self.k, beta=beta)
