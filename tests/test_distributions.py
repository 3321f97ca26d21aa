"""Posterior, prior and KL against torch.distributions on random shapes."""

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaezoo import DiagonalGaussian, StandardNormal

SHAPES = [(3, 2), (5, 7), (2, 4, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_posterior_matches_torch_distributions(shape):
    torch.manual_seed(0)
    mean, logvar = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    q = DiagonalGaussian(mean, logvar)
    ref = Independent(Normal(mean, torch.exp(0.5 * logvar)), 1)
    z = torch.randn((6,) + shape, dtype=torch.float64)
    torch.testing.assert_close(q.log_prob(z), ref.log_prob(z), atol=1e-5, rtol=0)
    torch.testing.assert_close(q.entropy(), ref.entropy(), atol=1e-5, rtol=0)
    prior = Independent(Normal(torch.zeros_like(mean), torch.ones_like(mean)), 1)
    torch.testing.assert_close(q.kl(StandardNormal(shape[-1])), kl_divergence(ref, prior), atol=1e-5, rtol=0)
    torch.testing.assert_close(q.kl_per_dim().sum(-1), q.kl(), atol=1e-12, rtol=0)
    torch.testing.assert_close(StandardNormal(shape[-1]).log_prob(z), prior.log_prob(z), atol=1e-5, rtol=0)


def test_rsample_shape_moments_and_gradient():
    torch.manual_seed(1)
    mean = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, 2 * torch.log(torch.tensor(0.5)).item()]])
    z = DiagonalGaussian(mean, logvar).rsample((20000,))
    assert z.shape == (20000, 1, 2)
    torch.testing.assert_close(z.mean(0), mean.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([[1.0, 0.5]]), atol=0.02, rtol=0)
    z.sum().backward()
    torch.testing.assert_close(mean.grad, torch.full_like(mean, 20000.0))


def test_prior_sample_temperature():
    z = StandardNormal(4).sample(50000, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (50000, 4)
    torch.testing.assert_close(z.std(0), torch.full((4,), 0.5), atol=0.01, rtol=0)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 4))
