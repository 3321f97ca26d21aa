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
from vaezoo.core.distributions import LOG_2PI, DiagonalGaussian

if TYPE_CHECKING:
    from vaezoo.core.model import VAE


class ObjectiveOutput:
    """What an objective returns. ``loss`` carries the gradients; the per-example figures
    (for logs and scores) are derived on first use, so a training step pays only for the
    ones it reads.

    Attributes:
        loss: scalar minimised by the optimiser.
        reconstruction: ``[N]`` log p(x|z) at a posterior sample.
        kl: ``[N]`` KL(q(z|x) || p(z)): closed form, or log q(z|x) - log p(z) at the sample.
        kl_terms: ``[N, D]`` the closed-form KL of every latent dimension, or None when the
            KL is a Monte-Carlo estimate (another prior, or an IAF posterior).
        elbo: ``[N]`` plain ELBO (beta = 1, no free bits), single-sample.
        bound: ``[N]`` the per-example objective actually optimised.
        kl_per_dim: ``[D]`` batch mean of the KL of each latent dimension (None without kl_terms).
        extra: further figures of the step (e.g. beta-TCVAE's terms), logged as they are.
        likelihood: p(x|z) at the posterior sample(s) behind ``reconstruction`` (its first N
            rows are the N examples'), or None; what an adversarial stage reads its fakes from.
    """

    def __init__(self, loss: torch.Tensor, reconstruction: torch.Tensor, kl: torch.Tensor | None = None, *,
                 kl_terms: torch.Tensor | None = None, beta: float = 1.0, bound: torch.Tensor | None = None,
                 kl_per_dim: torch.Tensor | None = None, extra: dict[str, torch.Tensor] | None = None,
                 likelihood: Any = None):
        if kl is None and kl_terms is None:
            raise ValueError("an ObjectiveOutput needs kl or kl_terms")
        self.loss = loss
        self.reconstruction = reconstruction
        self.kl_terms = kl_terms
        self._kl = kl
        self._beta, self._bound, self._kl_per_dim = beta, bound, kl_per_dim
        self.extra = extra or {}
        self.likelihood = likelihood

    @property
    def kl(self) -> torch.Tensor:
        if self._kl is None:
            assert self.kl_terms is not None
            self._kl = self.kl_terms.sum(-1)
        return self._kl

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl

    @property
    def bound(self) -> torch.Tensor:
        return self._bound if self._bound is not None else self.reconstruction - self._beta * self.kl

    @property
    def kl_per_dim(self) -> torch.Tensor | None:
        if self._kl_per_dim is None and self.kl_terms is not None:
            self._kl_per_dim = self.kl_terms.mean(0)
        return self._kl_per_dim

    @property
    def mean_kl(self) -> torch.Tensor:
        """The batch mean of the KL, cheaply from the per-dimension means when there are some."""
        per_dim = self.kl_per_dim
        return per_dim.sum() if per_dim is not None else self.kl.mean()


@dataclass
class ELBOTerms:
    """The two terms of the ELBO at one posterior sample, per example."""

    posterior: Any                # q(z|x): a DiagonalGaussian or an IAFPosterior
    reconstruction: torch.Tensor  # [N] log p(x|z)
    kl: torch.Tensor              # [N] KL(q(z|x) || p(z)), closed form or estimated at the sample
    kl_per_dim: torch.Tensor | None = None  # [N, D] the closed-form KL of each dimension, when there is one
    z: torch.Tensor | None = None           # [N, D] the sample
    likelihood: Any = None                  # p(x|z) at the sample

    @property
    def elbo(self) -> torch.Tensor:
        return self.reconstruction - self.kl


def elbo_terms(vae: "VAE", batch: Batch) -> ELBOTerms:
    """log p(x|z) at one reparameterised sample and the KL: in closed form for a diagonal
    posterior and the standard normal prior, else the Monte-Carlo estimate
    log q(z|x) - log p(z) at that sample. What training, evaluation and scoring all compute."""
    out = vae(batch)
    rec = out.likelihood.log_prob(batch["x"], batch.get("mask"))
    if out.log_q is None:
        kl_per_dim = out.posterior.kl_per_dim()
        return ELBOTerms(out.posterior, rec, kl_per_dim.sum(-1), kl_per_dim, out.z, out.likelihood)
    return ELBOTerms(out.posterior, rec, out.log_q - vae.prior.log_prob(out.z), None, out.z, out.likelihood)


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
    if terms.kl_per_dim is None:
        if free_bits > 0:
            raise ValueError("free bits need the closed-form KL of each dimension (a diagonal posterior and the "
                             "standard normal prior)")
        kl_term = terms.kl.mean()
        loss = -rec.mean() + (kl_term if beta == 1.0 else beta * kl_term)
        return ObjectiveOutput(loss, rec, terms.kl, beta=beta, likelihood=terms.likelihood)
    mean_kl_per_dim = terms.kl_per_dim.mean(0)        # [D]: the loss's KL term, and the log's
    kl_term = _floored_sum(mean_kl_per_dim, free_bits)
    loss = -rec.mean() + (kl_term if beta == 1.0 else beta * kl_term)   # 1.0 * x is x: one op less per step
    return ObjectiveOutput(loss, rec, kl_terms=terms.kl_per_dim, beta=beta, kl_per_dim=mean_kl_per_dim,
                           likelihood=terms.likelihood)


def log_importance_weights(
    vae: "VAE", batch: Batch, k: int, *, posterior: Any = None, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """log w = log p(x|z) + beta * (log p(z) - log q(z|x)) for ``k`` posterior samples, with
    log p(z) of the VAE's prior and log q(z|x) of its posterior (the flow's, for an IAF).

    Returns ``(log_w, log_px)``, each ``[k, N]``. Decodes all ``k * N`` latents in one call.
    """
    log_w, log_px, _ = _importance_weights(vae, batch, k, posterior, beta)
    return log_w, log_px


def _importance_weights(vae: "VAE", batch: Batch, k: int, posterior: Any, beta: float) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``log_importance_weights`` and the decoder's p(x|z) of the ``k * N`` latents, sample by sample."""
    q = posterior if posterior is not None else vae.encode(batch)
    z, log_q = q.rsample_with_log_prob((k,))              # [k, N, D], [k, N]
    n = z.shape[1]
    repeated = repeat_batch(batch, k)
    classes = vae.conditions(batch)                       # [N] for a conditional VAE: each sample keeps its class
    px = vae.decode(z.reshape(k * n, -1), None if classes is None else classes.repeat(k))
    log_px = px.log_prob(repeated["x"], repeated.get("mask")).view(k, n)
    log_ratio = vae.prior.log_prob(z) - log_q
    return log_px + beta * log_ratio, log_px, px


def iwae_objective(vae: "VAE", batch: Batch, *, k: int = 5, beta: float = 1.0) -> ObjectiveOutput:
    """The k-sample importance-weighted bound (Burda et al. 2016).

    With beta != 1 the prior/posterior log-ratio is weighted by beta, which reduces to the
    beta-ELBO at k = 1.
    """
    q = vae.encode(batch)
    log_w, log_px, px = _importance_weights(vae, batch, k, q, beta)
    bound = torch.logsumexp(log_w, 0) - math.log(k)
    if vae.closed_form_kl:
        return ObjectiveOutput(-bound.mean(), log_px[0], kl_terms=q.kl_per_dim(), beta=beta, bound=bound, likelihood=px)
    with torch.no_grad():   # the KL for the log: the first sample's estimate (log w = log p(x|z) - KL there)
        kl = (log_px[0] - log_w[0]) / beta if beta else torch.zeros_like(log_px[0])
    return ObjectiveOutput(-bound.mean(), log_px[0], kl, beta=beta, bound=bound, likelihood=px)


# -- objectives as modules, by name --------------------------------------------------------------


class Objective(nn.Module):
    """A training objective around a VAE: ``objective(batch, beta=...) -> ObjectiveOutput``.

    Subclasses take ``(vae, options, dataset_size=...)``, ``options`` being the recipe's
    ``[objective]`` section (any object with the attributes they read) and ``dataset_size``
    the number of training examples (for estimators that weight a minibatch by it), and
    implement ``forward``.

    ``separable_reconstruction`` says that ``loss`` is ``-mean log p(x|z)`` plus terms without
    it, so a stage may reweigh the likelihood term (the adversarial stage's ``likelihood_weight``).
    """

    separable_reconstruction: bool = False

    def __init__(self, vae: "VAE", options: Any = None, *, dataset_size: int | None = None):
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


def build_objective(kind: str, vae: "VAE", options: Any = None, *, dataset_size: int | None = None) -> Objective:
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown objective {kind!r}; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[kind](vae, options, dataset_size=dataset_size)


@register_objective("elbo")
class ELBO(Objective):
    """The beta-ELBO with free bits (``options.free_bits``, 0 when not given)."""

    separable_reconstruction = True

    def __init__(self, vae: "VAE", options: Any = None, *, dataset_size: int | None = None):
        super().__init__(vae, options)
        self.free_bits = float(getattr(options, "free_bits", 0.0))

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        return elbo_objective(self.vae, batch, beta=beta, free_bits=self.free_bits)


@register_objective("iwae")
class IWAE(Objective):
    """The k-sample IWAE bound (``options.iwae_samples``, 5 when not given)."""

    def __init__(self, vae: "VAE", options: Any = None, *, dataset_size: int | None = None):
        super().__init__(vae, options)
        self.k = int(getattr(options, "iwae_samples", 5))

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        return iwae_objective(self.vae, batch, k=self.k, beta=beta)


# -- beta-TCVAE ------------------------------------------------------------------------------------


@dataclass
class KLDecomposition:
    """KL(q(z|x) || p(z)) of each example, split three ways (Chen et al. 2018); the three add
    up to log q(z|x) - log p(z) at the example's sample."""

    mutual_information: torch.Tensor   # [N] log q(z|x) - log q(z): the index-code MI
    total_correlation: torch.Tensor    # [N] log q(z) - sum_d log q(z_d)
    dimension_wise_kl: torch.Tensor    # [N] sum_d log q(z_d) - log p(z)


def decompose_kl(posterior: DiagonalGaussian, z: torch.Tensor, log_p_z: torch.Tensor, dataset_size: int) -> KLDecomposition:
    """The decomposition at one sample ``z`` [M, D] per example of a minibatch, with the
    aggregate posterior q(z) = 1/N sum_n q(z|n) and its marginals q(z_d) estimated from the
    batch by minibatch-weighted sampling (Chen et al. 2018): the example's own posterior
    weighs 1/N, each of the other M - 1 weighs (N - 1) / (N (M - 1)), N the data set's size.
    Exact when the batch is the whole data set. (The reference code divides every term by
    N M instead: for the joint that shifts log q(z) by about -log M, for the product of
    marginals by -D log(N M), constants that leave its gradients right and its TC figure
    off by about (D - 1) log(N M); its stratified variant is reported wrong.)"""
    mean, logvar = posterior.mean, posterior.logvar
    m = z.shape[0]
    # log q(z_i,d | x_j): every sample i under every example j's Gaussian, per dimension [M, M, D]
    per_dim = -0.5 * (LOG_2PI + logvar.unsqueeze(0) + (z.unsqueeze(1) - mean.unsqueeze(0)) ** 2 * torch.exp(-logvar).unsqueeze(0))
    log_q_own = per_dim.diagonal(dim1=0, dim2=1).sum(0)                    # [M] log q(z_i | x_i)
    n = max(dataset_size, m)
    other = math.log(n - 1) - math.log(n) - math.log(m - 1) if m > 1 else -math.inf
    log_w = torch.full((m, m), other, dtype=per_dim.dtype, device=per_dim.device)
    log_w.fill_diagonal_(-math.log(n))
    log_q = torch.logsumexp(per_dim.sum(-1) + log_w, dim=1)                          # [M]
    log_q_marginals = torch.logsumexp(per_dim + log_w.unsqueeze(-1), dim=1).sum(-1)  # [M] sum_d log q(z_d)
    return KLDecomposition(log_q_own - log_q, log_q - log_q_marginals, log_q_marginals - log_p_z)


@register_objective("beta-tcvae")
class BetaTCVAE(Objective):
    """The beta-TCVAE (Chen et al. 2018): reconstruction, then alpha * index-code MI +
    beta * total correlation + gamma * dimension-wise KL, estimated by minibatch-weighted
    sampling over a data set of ``dataset_size`` examples. ``beta`` is the recipe's (with its
    schedule); ``options.tc_alpha`` and ``options.tc_gamma`` weigh the other two. Needs the
    diagonal posterior (it evaluates every example's q(z|x) at every other's sample); works
    with any prior (the last term uses the joint log p(z))."""

    separable_reconstruction = True

    def __init__(self, vae: "VAE", options: Any = None, *, dataset_size: int | None = None):
        super().__init__(vae, options)
        if not dataset_size:
            raise ValueError("beta-tcvae needs the training set's size (minibatch-weighted sampling weighs by it)")
        if getattr(vae, "flow", None) is not None:
            raise ValueError("beta-tcvae needs the diagonal posterior: an IAF's q(z|x) is known at its own samples only")
        self.dataset_size = dataset_size
        self.alpha = float(getattr(options, "tc_alpha", 1.0))
        self.gamma = float(getattr(options, "tc_gamma", 1.0))

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        out = self.vae(batch)
        rec = out.likelihood.log_prob(batch["x"], batch.get("mask"))
        parts = decompose_kl(out.posterior, out.z, self.vae.prior.log_prob(out.z), self.dataset_size)
        penalty = (self.alpha * parts.mutual_information + beta * parts.total_correlation
                   + self.gamma * parts.dimension_wise_kl)
        kl = parts.mutual_information + parts.total_correlation + parts.dimension_wise_kl
        extra = {"mi": parts.mutual_information.mean(), "tc": parts.total_correlation.mean(),
                 "dimension_wise_kl": parts.dimension_wise_kl.mean()}
        return ObjectiveOutput(-(rec - penalty).mean(), rec, kl.detach(), beta=beta, bound=(rec - penalty).detach(),
                               extra=extra, likelihood=out.likelihood)
