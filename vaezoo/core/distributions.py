"""The latent space: a diagonal Gaussian posterior q(z|x) and a standard normal prior p(z).

Both keep the event dimension last: ``mean`` and ``logvar`` have shape ``[..., D]`` and
``log_prob`` sums over ``D``. The KL is in closed form.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over the last dimension."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        if mean.shape != logvar.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ in shape")
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def variance(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    @property
    def dim(self) -> int:
        return self.mean.shape[-1]

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Reparameterised samples of shape ``sample_shape + mean.shape``."""
        shape = torch.Size(sample_shape) + self.mean.shape
        eps = torch.randn(shape, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps

    def rsample_with_log_prob(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised samples and their log-densities (what every posterior offers)."""
        z = self.rsample(sample_shape)
        return z, self.log_prob(z)

    @property
    def point(self) -> torch.Tensor:
        """The one z that stands for this posterior (reconstructions, interpolations): its mean."""
        return self.mean

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z), summed over the last dimension; ``z`` may carry extra leading dims."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mean) ** 2 / self.variance).sum(-1)

    def cross_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q_m(z_i) for every draw ``z`` ``[S, D]`` under every one of the ``N`` Gaussians of a
        batch (``mean`` ``[N, D]``): ``[S, N]``, the densities of a mixture's components.

        The same density as ``log_prob``, written as one matrix product over the expanded
        square instead of an ``[S, N, D]`` tensor of differences; in float64 and with the
        means centred (log densities do not change under a common shift), so the expanded
        terms lose no precision to cancellation.
        """
        mean, logvar, z = self.mean.double(), self.logvar.double(), z.double()
        centre = mean.mean(0)
        mean, z = mean - centre, z - centre
        precision = torch.exp(-logvar)
        weights = torch.cat([-0.5 * precision, mean * precision], 1).T                 # [2D, N]
        const = -0.5 * (mean.shape[-1] * LOG_2PI + logvar.sum(-1) + (mean**2 * precision).sum(-1))
        return torch.addmm(const, torch.cat([z**2, z], 1), weights)

    def entropy(self) -> torch.Tensor:
        return 0.5 * (LOG_2PI + 1 + self.logvar).sum(-1)

    def kl_per_dim(self) -> torch.Tensor:
        """KL(q || N(0, I)) for each latent dimension, shape ``[..., D]``."""
        return 0.5 * (self.variance + self.mean**2 - 1 - self.logvar)

    def kl(self, prior: "StandardNormal | None" = None) -> torch.Tensor:
        """KL(q || p) in closed form, summed over the last dimension."""
        if prior is not None and not isinstance(prior, StandardNormal):
            raise TypeError("closed-form KL is implemented against the standard normal prior")
        return self.kl_per_dim().sum(-1)

    def detach(self) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mean.detach(), self.logvar.detach())

    def __getitem__(self, index) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mean[index], self.logvar[index])


class StandardNormal:
    """p(z) = N(0, I) over ``dim`` dimensions."""

    def __init__(self, dim: int):
        self.dim = dim

    def sample(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``n`` draws from N(0, temperature^2 I)."""
        eps = torch.randn((n, self.dim), generator=generator, device=device, dtype=dtype)
        return temperature * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (LOG_2PI + z**2).sum(-1)
