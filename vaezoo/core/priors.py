"""Priors p(z): the standard normal, a learned mixture of Gaussians, and the VampPrior.

Every prior is a module (its parameters train with the VAE and live in its weights) with

    log_prob(z)                  log p(z), summed over the last dimension: [..., D] -> [...]
    sample(n, temperature=...)   n draws [n, D]; temperature scales each Gaussian's spread
    closed_form_kl               True when KL(q || p) has a closed form for a diagonal q

The standard normal has the closed-form KL (and so free bits per dimension); for the others
the ELBO uses the Monte-Carlo estimate log q(z|x) - log p(z) at its posterior sample, and
the IW-NLL uses log p(z) of the chosen prior, so the bound stays exact in form.

``[prior] kind`` of a recipe names one of ``PRIORS``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from vaezoo.core.distributions import LOG_2PI


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(logvar))), summed over the last dimension (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (z - mean) ** 2 * torch.exp(-logvar)).sum(-1)


def mixture_log_prob(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor,
                     log_weights: torch.Tensor) -> torch.Tensor:
    """log sum_k w_k N(z; mean_k, var_k) for z [..., D] and K components ([K, D], [K])."""
    per_component = gaussian_log_prob(z.unsqueeze(-2), means, logvars)          # [..., K]
    return torch.logsumexp(per_component + log_weights, dim=-1)


def sample_mixture(n: int, means: torch.Tensor, logvars: torch.Tensor, weights: torch.Tensor, *,
                   temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` draws from a mixture: a component by its weight, then its Gaussian."""
    component = torch.multinomial(weights, n, replacement=True, generator=generator)
    eps = torch.randn((n, means.shape[-1]), generator=generator, device=means.device, dtype=means.dtype)
    return means[component] + temperature * torch.exp(0.5 * logvars[component]) * eps


class Prior(nn.Module):
    closed_form_kl = False

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raise NotImplementedError


class StandardNormalPrior(Prior):
    """p(z) = N(0, I): no parameters; KL against a diagonal Gaussian in closed form."""

    closed_form_kl = True

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (LOG_2PI + z**2).sum(-1)

    def sample(self, n, *, temperature=1.0, generator=None, device="cpu", dtype=torch.float32):
        return temperature * torch.randn((n, self.dim), generator=generator, device=device, dtype=dtype)


class MixturePrior(Prior):
    """p(z) = sum_k w_k N(z; mu_k, diag(sigma_k^2)) with learned means, scales and weights
    (``mog``). The means start spread as N(0, init_scale^2), the scales at 1, the weights equal."""

    def __init__(self, dim: int, components: int, init_scale: float = 1.0):
        super().__init__(dim)
        self.means = nn.Parameter(init_scale * torch.randn(components, dim))
        self.logvars = nn.Parameter(torch.zeros(components, dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, self.means, self.logvars, torch.log_softmax(self.logits, -1))

    def sample(self, n, *, temperature=1.0, generator=None, device="cpu", dtype=torch.float32):
        with torch.no_grad():
            return sample_mixture(n, self.means, self.logvars, torch.softmax(self.logits, -1),
                                  temperature=temperature, generator=generator).to(device=device, dtype=dtype)


class VampPrior(Prior):
    """The VampPrior (Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k), the aggregate
    posterior of K learned pseudo-inputs u_k, which the plugin provides
    (``Modality.pseudo_inputs(k)``: a module whose ``forward()`` returns a batch the encoder
    reads). The encoder is the VAE's own; it is held outside this module's parameters."""

    def __init__(self, dim: int, pseudo_inputs: nn.Module):
        super().__init__(dim)
        self.pseudo_inputs = pseudo_inputs
        self._encode: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None

    def bind(self, encode: Callable[[Any], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Give the prior the VAE's encoder (a plain reference: its parameters are the VAE's)."""
        self._encode = encode

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-variances [K, D] of q(z|u_k)."""
        if self._encode is None:
            raise RuntimeError("the VampPrior is not bound to an encoder (VAE binds it)")
        return self._encode(self.pseudo_inputs())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        means, logvars = self.components()
        k = means.shape[0]
        log_weights = torch.full((k,), -math.log(k), dtype=means.dtype, device=means.device)
        return mixture_log_prob(z, means, logvars, log_weights)

    def sample(self, n, *, temperature=1.0, generator=None, device="cpu", dtype=torch.float32):
        with torch.no_grad():
            means, logvars = self.components()
            weights = torch.full((means.shape[0],), 1.0 / means.shape[0], device=means.device)
            return sample_mixture(n, means, logvars, weights, temperature=temperature,
                                  generator=generator).to(device=device, dtype=dtype)


PRIORS = ("standard", "mog", "vamp")


def build_prior(options: Any, dim: int, pseudo_inputs: Callable[[int], nn.Module | None] | None = None) -> Prior:
    """The prior ``options.kind`` names (the recipe's ``[prior]`` section, or None for the
    standard normal). ``pseudo_inputs(k)`` asks the plugin for the VampPrior's pseudo-inputs;
    ``ValueError`` says why a prior cannot be built."""
    kind = getattr(options, "kind", "standard")
    if kind == "standard":
        return StandardNormalPrior(dim)
    if kind == "mog":
        return MixturePrior(dim, options.components, options.init_scale)
    if kind == "vamp":
        module = pseudo_inputs(options.components) if pseudo_inputs is not None else None
        if module is None:
            raise ValueError("needs pseudo-inputs of the data's shape (Modality.pseudo_inputs), which this modality "
                             "does not define: its inputs may be discrete, such as tokens")
        return VampPrior(dim, module)
    raise ValueError(f"unknown prior {kind!r}; known: {', '.join(PRIORS)}")
