"""IW log-likelihood against a closed form, bound ordering, active units, mutual information."""

import math

import pytest
import torch
from torch import nn

from vaezoo import VAE, DiagonalGaussian, Gaussian
from vaezoo.core import estimators
from vaezoo.core.conditions import ClassCondition
from vaezoo.core.estimators import EvalResult, active_units, evaluate, iw_log_likelihood, mutual_information
from vaezoo.core.objectives import log_importance_weights

from tiny_modality import Decoder, Encoder


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
    # The same posterior for every x: z carries no information about x. Every draw's own
    # density equals the mixture's, so the estimate is 0 (never a negative sampling artefact).
    for n, seed in [(7, 0), (7, 1), (1024, 2)]:
        torch.manual_seed(seed)
        same = DiagonalGaussian(torch.full((n, 32), 0.3), torch.full((n, 32), -0.5))
        value = mutual_information(same).item()
        assert 0.0 <= value < 1e-9
    # Far-apart, sharp posteriors: z identifies x, so I(x; z) reaches log N and never passes it.
    torch.manual_seed(0)
    d = 4
    for n in (7, 1024):
        apart = DiagonalGaussian(torch.arange(n).float().unsqueeze(1).repeat(1, d) * 10, torch.full((n, d), -6.0))
        value = mutual_information(apart).item()
        assert value == pytest.approx(math.log(n), abs=1e-4) and value <= math.log(n) + 1e-6


def quadrature_mi_1d(mean: torch.Tensor, logvar: torch.Tensor) -> float:
    """I(n; z) for a 1-D mixture by the trapezoid rule on a fine grid: sum_n 1/N int q_n log(q_n / q)."""
    sd = torch.exp(0.5 * logvar.double())
    grid = torch.linspace(float((mean - 10 * sd).min()), float((mean + 10 * sd).max()), 200_001, dtype=torch.float64)
    log_qn = torch.distributions.Normal(mean.double().unsqueeze(1), sd.unsqueeze(1)).log_prob(grid)  # [N, G]
    log_q = torch.logsumexp(log_qn, 0) - math.log(len(mean))
    integrand = (log_qn.exp() * (log_qn - log_q)).mean(0)
    return torch.trapezoid(integrand, grid).item()


def test_mutual_information_matches_quadrature_for_an_overlapping_mixture():
    # Five overlapping 1-D posteriors of different widths: I(n; z) is well inside (0, log 5).
    mean = torch.tensor([[-1.0], [-0.4], [0.0], [0.5], [2.0]])
    logvar = torch.tensor([[0.0], [-1.0], [-0.5], [-2.0], [0.5]])
    exact = quadrature_mi_1d(mean[:, 0], logvar[:, 0])
    assert 0.3 < exact < math.log(5) - 0.3
    torch.manual_seed(0)
    many = mutual_information(DiagonalGaussian(mean, logvar), samples=400_000, chunk_elements=64).item()
    assert many == pytest.approx(exact, abs=0.01)
    # The default 4096 draws land within a few hundredths of a nat, seed after seed.
    for seed in range(5):
        torch.manual_seed(seed)
        assert mutual_information(DiagonalGaussian(mean, logvar)).item() == pytest.approx(exact, abs=0.05)


def test_mutual_information_matches_direct_monte_carlo_in_several_dimensions():
    # A direct, independent estimate: draw (n, z) pairs, evaluate every log q(z|x_m) with
    # torch.distributions, and average log q(z|x_n) - log q(z).
    g = torch.Generator().manual_seed(0)
    n, d = 12, 3
    mean, logvar = 0.8 * torch.randn(n, d, generator=g), 0.5 * torch.randn(n, d, generator=g) - 1.0
    who = torch.randint(0, n, (200_000,), generator=g)
    z = mean[who] + torch.exp(0.5 * logvar[who]) * torch.randn(len(who), d, generator=g)
    components = torch.distributions.Independent(torch.distributions.Normal(mean.double(), torch.exp(0.5 * logvar.double())), 1)
    log_qm = components.log_prob(z.double().unsqueeze(1))                                  # [draws, N]
    direct = (log_qm.gather(1, who.unsqueeze(1)).squeeze(1) - torch.logsumexp(log_qm, 1) + math.log(n)).mean().item()
    torch.manual_seed(1)
    assert mutual_information(DiagonalGaussian(mean, logvar), samples=100_000).item() == pytest.approx(direct, abs=0.01)


class FixedPosteriors(nn.Module):
    """An encoder that returns a stored posterior per example, looked up by batch["i"]."""

    def __init__(self, mean, logvar):
        super().__init__()
        self.mean, self.logvar = mean, logvar

    def forward(self, batch):
        return self.mean[batch["i"]], self.logvar[batch["i"]]


class ZeroDecoder(nn.Module):
    def forward(self, z):
        return Gaussian(torch.zeros(len(z), 1), 0.0)


def fixed_vae(mean, logvar):
    return VAE(FixedPosteriors(mean, logvar), ZeroDecoder(), mean.shape[1])


def index_batches(n, size):
    return [{"x": torch.zeros(min(size, n - i), 1), "i": torch.arange(i, min(i + size, n))} for i in range(0, n, size)]


def test_evaluate_mi_is_over_the_whole_set_not_per_batch():
    # 64 well-separated posteriors in batches of 8: the old per-batch figure could not pass log 8.
    n = 64
    vae = fixed_vae(torch.arange(n).float().unsqueeze(1) * 10, torch.full((n, 1), -6.0))
    result = evaluate(vae, index_batches(n, 8))
    assert result.mutual_information == pytest.approx(math.log(n), abs=1e-3)
    assert result.mutual_information_bound == pytest.approx(math.log(n)) and result.mutual_information_examples == n
    assert result.as_dict()["mutual_information_bound"] == result.mutual_information_bound  # reaches eval.json


def test_evaluate_mi_of_seven_examples_lies_between_0_and_log_7():
    g = torch.Generator().manual_seed(0)
    overlapping = fixed_vae(0.5 * torch.randn(7, 16, generator=g), torch.full((7, 16), -0.5))
    collapsed = fixed_vae(torch.zeros(7, 16), torch.zeros(7, 16))
    result = evaluate(overlapping, index_batches(7, 3))
    assert 0.3 < result.mutual_information < math.log(7)
    assert evaluate(overlapping, index_batches(7, 3)).mutual_information == result.mutual_information  # seeded
    assert result.mutual_information_bound == pytest.approx(math.log(7))
    assert dict(result.table())["mutual information"] == f"{result.mutual_information:.4f} (at most log N = 1.95)"
    assert 0.0 <= evaluate(collapsed, index_batches(7, 3)).mutual_information < 1e-9  # z says nothing: 0, not below


def test_evaluate_mi_uses_at_most_the_first_mi_max_examples(monkeypatch):
    monkeypatch.setattr(estimators, "MI_MAX_EXAMPLES", 50)
    n = 120
    vae = fixed_vae(torch.arange(n).float().unsqueeze(1) * 10, torch.full((n, 1), -6.0))
    result = evaluate(vae, index_batches(n, 32))
    assert result.n_examples == n and result.mutual_information_examples == 50
    assert result.mutual_information == pytest.approx(math.log(50), abs=1e-3)
    assert dict(result.table())["mutual information"] == (
        f"{result.mutual_information:.4f} (at most log N = 3.91 over the first 50 examples: "
        "saturated: z tells these examples apart)")


def test_mutual_information_row_names_its_ceiling():
    def row(mi, bound, examples=7, n=7):
        result = EvalResult(n_examples=n, elbo=0.0, reconstruction=0.0, kl=0.0, iw_nll=None, iw_samples=0, active_units=0,
                            mutual_information=mi, mutual_information_bound=bound, mutual_information_examples=examples)
        return dict(result.table())["mutual information"]

    log7 = math.log(7)
    assert row(1.93, log7) == "1.9300 (at most log N = 1.95: evaluate more examples for a meaningful figure)"
    assert row(0.9 * log7 - 0.001, log7) == f"{0.9 * log7 - 0.001:.4f} (at most log N = 1.95)"
    assert row(1.2, None, None) == "1.2000"  # an eval.json from before the bound was recorded


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


# -- the IW estimate decoded in blocks ------------------------------------------------------------


def iw_by_log_importance_weights(vae, batch, k, chunk_size):
    """The IW estimate from training's log_importance_weights, one decoder call per chunk of
    samples (how iw_log_likelihood computed it before it decoded in blocks)."""
    q = vae.encode(batch)
    log_w = [log_importance_weights(vae, batch, min(chunk_size, k - s), posterior=q)[0] for s in range(0, k, chunk_size)]
    return torch.logsumexp(torch.cat(log_w), 0) - math.log(k)


@pytest.mark.parametrize("conditional", [False, True])
def test_blocks_of_any_size_give_the_same_estimate_from_the_same_draws(conditional):
    torch.manual_seed(0)
    extra = 2 if conditional else 0   # the class embedding's size
    vae = VAE(Encoder(6, 8, 2, extra), Decoder(6, 8, 2 + extra), 2,
              condition=ClassCondition(3, extra) if conditional else None).eval()
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.randn(9, 6, generator=g), "mask": torch.rand(9, 6, generator=g) > 0.3, "label": torch.arange(9) % 3}
    torch.manual_seed(2)
    want = iw_by_log_importance_weights(vae, batch, 23, 10)
    # None: blocks sized by the first; 4 and 25 latents cut through samples and chunks
    for rows in (None, 1, 4, 9, 25, 10_000):
        torch.manual_seed(2)
        got = iw_log_likelihood(vae, batch, 23, chunk_size=10, rows=rows)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    # each latent is scored on its own example's x, mask and class: another class changes it
    torch.manual_seed(2)
    other = iw_log_likelihood(vae, {**batch, "label": (batch["label"] + 1) % 3}, 23, chunk_size=10)
    assert (other - want).abs().min() > 1e-4 if conditional else torch.equal(other, want)


class WideDecoder(nn.Module):
    """A decoder whose largest activation has ``width`` elements per latent; notes the latents of each call."""

    def __init__(self, width):
        super().__init__()
        self.widen = nn.Linear(1, width, bias=False)
        self.calls = []

    def forward(self, z):
        self.calls.append(len(z))
        return Gaussian(self.widen(z[:, :1]).mean(-1, keepdim=True), 0.0)


class ZeroEncoder(nn.Module):
    def forward(self, batch):
        zeros = torch.zeros(len(batch["x"]), 2, device=batch["x"].device)
        return zeros, zeros


def test_cpu_blocks_hold_as_many_latents_as_fit_the_activation_budget():
    decoder = WideDecoder(estimators.CPU_ACTIVATION_ELEMENTS // 40)
    vae = VAE(ZeroEncoder(), decoder, 2)
    batch = {"x": torch.zeros(10, 1)}
    # chunks of 100, 100 and 50 latents: a first block of 8 measures, then 40 a call
    iw_log_likelihood(vae, batch, 25, chunk_size=10)
    assert decoder.calls == [8, 40, 40, 12, 40, 40, 20, 40, 10]
    decoder.calls.clear()
    iw_log_likelihood(vae, batch, 25, chunk_size=10, rows=30)
    assert decoder.calls == [30, 30, 30, 10, 30, 30, 30, 10, 30, 20]
    with pytest.raises(ValueError, match="rows must be at least 1, got 0"):
        iw_log_likelihood(vae, batch, 25, rows=0)
    # on another device (a GPU wants large calls) a whole chunk per call, as before blocks
    decoder.calls.clear()
    vae.to("meta")
    assert iw_log_likelihood(vae, {"x": torch.zeros(10, 1, device="meta")}, 25, chunk_size=10).shape == (10,)
    assert decoder.calls == [100, 100, 50]
