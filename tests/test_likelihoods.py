"""Every likelihood against torch.distributions, and masking of missing entries."""

import math

import pytest
import torch
from torch import distributions as D

from vaezoo import Bernoulli, Categorical, Gaussian, Laplace

SHAPES = [(4, 3), (2, 5, 6), (3, 1, 4, 4)]


def per_example(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(-1)


@pytest.mark.parametrize("shape", SHAPES)
def test_bernoulli(shape):
    torch.manual_seed(0)
    logits = torch.randn(shape, dtype=torch.float64)
    x = torch.randint(0, 2, shape).double()
    ref = per_example(D.Bernoulli(logits=logits).log_prob(x))
    torch.testing.assert_close(Bernoulli(logits).log_prob(x), ref, atol=1e-5, rtol=0)
    # Intensities in [0, 1]: the continuous cross-entropy x log p + (1 - x) log(1 - p).
    xs = torch.rand(shape, dtype=torch.float64)
    p = torch.sigmoid(logits)
    torch.testing.assert_close(Bernoulli(logits).log_prob(xs), per_example(xs * p.log() + (1 - xs) * (1 - p).log()), atol=1e-5, rtol=0)
    torch.testing.assert_close(Bernoulli(logits).mean, p)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("learned", [True, False])
def test_gaussian(shape, learned):
    torch.manual_seed(1)
    loc = torch.randn(shape, dtype=torch.float64)
    log_scale = torch.randn(shape[-1], dtype=torch.float64) if learned else math.log(0.3)
    x = torch.randn(shape, dtype=torch.float64)
    scale = torch.exp(torch.as_tensor(log_scale, dtype=torch.float64)).expand(shape)
    ref = per_example(D.Normal(loc, scale).log_prob(x))
    torch.testing.assert_close(Gaussian(loc, log_scale).log_prob(x), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_laplace(shape):
    torch.manual_seed(2)
    loc = torch.randn(shape, dtype=torch.float64)
    log_scale = torch.randn(shape, dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64)
    ref = per_example(D.Laplace(loc, log_scale.exp()).log_prob(x))
    torch.testing.assert_close(Laplace(loc, log_scale).log_prob(x), ref, atol=1e-5, rtol=0)


def test_laplace_and_gaussian_samples_have_the_right_spread():
    g = torch.Generator().manual_seed(0)
    loc = torch.zeros(200000)
    lap = Laplace(loc, math.log(2.0)).sample(generator=g)
    assert abs(lap.abs().mean().item() - 2.0) < 0.03   # E|x| = b
    gau = Gaussian(loc, math.log(3.0)).sample(generator=g)
    assert abs(gau.std().item() - 3.0) < 0.03


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 5)])
def test_categorical_with_padding(shape):
    torch.manual_seed(3)
    vocab = 11
    logits = torch.randn(shape + (vocab,), dtype=torch.float64)
    x = torch.randint(1, vocab, shape)
    x[..., -2:] = 0  # padding at the end of every sequence
    ref_all = D.Categorical(logits=logits).log_prob(x)
    keep = (x != 0).double()
    torch.testing.assert_close(Categorical(logits, pad_index=0).log_prob(x), per_example(ref_all * keep), atol=1e-5, rtol=0)
    torch.testing.assert_close(Categorical(logits).log_prob(x), per_example(ref_all), atol=1e-5, rtol=0)
    assert Categorical(logits).sample().shape == shape


@pytest.mark.parametrize(
    "make",
    [
        lambda s: (Bernoulli(torch.randn(s)), torch.rand(s)),
        lambda s: (Gaussian(torch.randn(s), torch.randn(s)), torch.randn(s)),
        lambda s: (Laplace(torch.randn(s), torch.randn(s)), torch.randn(s)),
        lambda s: (Categorical(torch.randn(s + (5,))), torch.randint(0, 5, s)),
    ],
    ids=["bernoulli", "gaussian", "laplace", "categorical"],
)
def test_masked_likelihood_ignores_masked_entries(make):
    torch.manual_seed(4)
    shape = (3, 8)
    dist, x = make(shape)
    mask = torch.rand(shape) > 0.4
    full = dist.elementwise_log_prob(x)
    expected = (full * mask).sum(-1)
    torch.testing.assert_close(dist.log_prob(x, mask), expected)
    # Whatever sits in a missing entry (even NaN) leaves the result unchanged.
    garbage = x.clone()
    if garbage.dtype.is_floating_point:
        garbage[~mask] = float("nan")
    else:
        garbage[~mask] = 4 - garbage[~mask]
    torch.testing.assert_close(dist.log_prob(garbage, mask), expected)


def test_nan_in_a_missing_entry_leaves_gradients_finite():
    loc = torch.zeros(2, 3, requires_grad=True)
    x = torch.tensor([[1.0, float("nan"), 2.0], [0.0, 1.0, 1.0]])
    Gaussian(loc).log_prob(x, ~torch.isnan(x)).sum().backward()
    assert torch.equal(loc.grad, torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]))
    logits = torch.zeros(2, 4, requires_grad=True)
    codes = torch.tensor([1.0, float("nan")])   # a categorical column with a missing cell
    Categorical(logits).log_prob(codes, ~torch.isnan(codes)).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() == 0
