"""IW log-likelihood against a closed form, bound ordering, active units, mutual information."""

import math

import pytest
import torch
from torch import nn

from vaezoo import VAE, DiagonalGaussian, Gaussian
from vaezoo.estimators import active_units, evaluate, iw_log_likelihood, mutual_information


class LinearGaussianModel:
    """p(z) = N(0, I_d), p(x|z) = N(Wz + b, s^2 I_n), so p(x) = N(b, W W^T + s^2 I) exactly."""

    def __init__(self, n=6, d=3, s=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(n, d, generator=g, dtype=torch.float64)
        self.b = torch.randn(n, generator=g, dtype=torch.float64)
        self.s = s
        self.n, self.d = n, d

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.n, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        precision = torch.eye(self.d, dtype=torch.float64) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov.T / self.s**2
        return mean, torch.diagonal(cov)


class ApproxEncoder(nn.Module):
    """The exact posterior's mean shifted and its marginal variances inflated: a realistic, imperfect q."""

    def __init__(self, model, shift=0.3, inflate=2.0):
        super().__init__()
        self.model, self.shift, self.inflate = model, shift, inflate

    def forward(self, batch):
        mean, var = self.model.posterior(batch["x"])
        return mean + self.shift, torch.log(var * self.inflate).expand_as(mean)


class LinearDecoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z):
        return Gaussian(z @ self.model.W.T + self.model.b, math.log(self.model.s))


@pytest.fixture
def linear_gaussian():
    model = LinearGaussianModel()
    vae = VAE(ApproxEncoder(model), LinearDecoder(model), model.d)
    z = torch.randn(400, model.d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = z @ model.W.T + model.b + model.s * torch.randn(400, model.n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return model, vae, x


def test_iw_estimate_k1000_is_within_half_a_nat_of_exact(linear_gaussian):
    model, vae, x = linear_gaussian
    torch.manual_seed(0)
    estimate = iw_log_likelihood(vae, {"x": x[:20]}, k=1000, chunk_size=250)
    exact = model.exact_log_px(x[:20])
    assert (estimate - exact).abs().max().item() < 0.5
    assert (estimate <= exact + 0.05).float().mean() > 0.5  # a lower bound in expectation


def test_elbo_below_iwae_k_below_iwae_larger_k(linear_gaussian):
    model, vae, x = linear_gaussian
    batch = {"x": x}
    torch.manual_seed(3)
    q = vae.encode(batch)
    elbo = torch.stack([vae.decode(q.rsample()).log_prob(x) - q.kl() for _ in range(50)]).mean().item()
    bounds = [iw_log_likelihood(vae, batch, k).mean().item() for k in (5, 50, 500)]
    exact = model.exact_log_px(x).mean().item()
    assert elbo < bounds[0] < bounds[1] < bounds[2] <= exact + 0.01
    iw1 = torch.stack([iw_log_likelihood(vae, batch, 1) for _ in range(50)]).mean().item()
    assert iw1 == pytest.approx(elbo, abs=0.05)  # k = 1 is the ELBO


def test_iw_estimate_is_stable_for_very_negative_weights():
    # Weights near exp(-10000) underflow a mean of exps; logsumexp must not.
    class FarDecoder(nn.Module):
        def forward(self, z):
            return Gaussian(z.sum(-1, keepdim=True) + 1000.0, math.log(0.01))

    class Enc(nn.Module):
        def forward(self, batch):
            return torch.zeros(len(batch["x"]), 2), torch.zeros(len(batch["x"]), 2)

    vae = VAE(Enc(), FarDecoder(), 2)
    est = iw_log_likelihood(vae, {"x": torch.zeros(3, 1)}, k=64, chunk_size=16)
    assert torch.isfinite(est).all() and (est < -1e6).all()


def test_active_units_counts_dimensions_with_varying_means():
    g = torch.Generator().manual_seed(0)
    means = torch.cat([torch.randn(500, 3, generator=g), 0.05 * torch.randn(500, 2, generator=g)], 1)
    count, variance = active_units(means)
    assert count == 3
    assert variance.shape == (5,) and (variance[3:] < 0.01).all()


def test_mutual_information_limits():
    torch.manual_seed(0)
    d = 4
    # The same posterior for every x: z carries no information about x (only sampling noise remains).
    same = DiagonalGaussian(torch.zeros(1024, d), torch.zeros(1024, d))
    assert abs(mutual_information(same).item()) < 0.15
    # Far-apart, sharp posteriors: z identifies x, so I(x; z) reaches log N.
    n = 1024
    apart = DiagonalGaussian(torch.arange(n).float().unsqueeze(1).repeat(1, d) * 10, torch.full((n, d), -6.0))
    assert mutual_information(apart).item() == pytest.approx(math.log(n), abs=0.15)


def test_evaluate_reports_every_figure(linear_gaussian):
    model, vae, x = linear_gaussian
    batches = [{"x": x[i : i + 100]} for i in range(0, 400, 100)]
    result = evaluate(vae, batches, iw_samples=200, max_examples=250)
    assert result.n_examples == 250
    assert result.iw_nll == pytest.approx(-model.exact_log_px(x[:250]).mean().item(), abs=0.2)
    assert result.elbo < -result.iw_nll
    assert result.active_units == 3 and len(result.kl_per_dim) == 3
    assert result.kl == pytest.approx(sum(result.kl_per_dim), rel=1e-6)
    # Evaluation runs on its own seed: the same numbers twice, and the caller's RNG untouched.
    state = torch.get_rng_state()
    again = evaluate(vae, batches, iw_samples=200, max_examples=250)
    assert again.iw_nll == result.iw_nll
    assert torch.equal(state, torch.get_rng_state())
