"""KL schedules, learning-rate schedules, free bits and the two training objectives."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from vaezoo import VAE, Gaussian
from vaezoo.core.objectives import build_objective, elbo_objective, free_bits_kl, iwae_objective, log_importance_weights
from vaezoo.core.schedules import KLSchedule, LRSchedule


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (KLSchedule("constant", beta=0.7), {0: 0.7, 10: 0.7, 10_000: 0.7}),
        (KLSchedule("linear", beta=2.0, warmup_steps=100), {0: 0.0, 25: 0.5, 50: 1.0, 100: 2.0, 500: 2.0}),
        (KLSchedule("linear", beta=1.0, start=0.2, warmup_steps=10), {0: 0.2, 5: 0.6, 10: 1.0}),
        # Fu et al.: period 100, rising for the first half of each cycle, then flat at beta.
        (KLSchedule("cyclical", beta=1.0, period=100, ratio=0.5), {0: 0.0, 25: 0.5, 50: 1.0, 99: 1.0, 100: 0.0, 125: 0.5}),
        (KLSchedule("logistic", beta=1.0, midpoint=2500, steepness=0.0025), {2500: 0.5, 0: 1 / (1 + math.exp(6.25)), 5000: 1 / (1 + math.exp(-6.25))}),
    ],
    ids=["constant", "linear", "linear-start", "cyclical", "logistic"],
)
def test_kl_schedules_at_chosen_steps(schedule, expected):
    for step, beta in expected.items():
        assert schedule(step) == pytest.approx(beta, abs=1e-12), step


def test_lr_schedules():
    assert LRSchedule("constant", warmup_steps=4)(0) == pytest.approx(0.25)
    assert LRSchedule("constant", warmup_steps=4)(4) == 1.0
    cosine = LRSchedule("cosine", warmup_steps=0, total_steps=100, min_factor=0.1)
    assert cosine(0) == pytest.approx(1.0)
    assert cosine(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cosine(100) == pytest.approx(0.1)
    assert LRSchedule("linear", warmup_steps=10, total_steps=110)(60) == pytest.approx(0.5)


def test_free_bits_floor_and_gradient():
    kl = torch.tensor([[0.05, 0.5, 2.0], [0.15, 0.7, 1.0]], requires_grad=True)  # batch means 0.1, 0.6, 1.5
    value = free_bits_kl(kl, free_bits=0.25)
    assert value.item() == pytest.approx(0.25 + 0.6 + 1.5)
    value.backward()
    # The dimension under the floor gets no gradient; the others the batch-mean gradient.
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))
    assert free_bits_kl(kl.detach(), 0.0).item() == pytest.approx(0.1 + 0.6 + 1.5)


class LinearEncoder(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.lin = nn.Linear(n, 2 * d)

    def forward(self, batch):
        return self.lin(batch["x"]).chunk(2, -1)


class LinearDecoder(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.lin = nn.Linear(d, n)

    def forward(self, z):
        return Gaussian(self.lin(z), 0.0)


def make_vae(n=5, d=3):
    torch.manual_seed(0)
    return VAE(LinearEncoder(n, d), LinearDecoder(n, d), d)


def test_elbo_objective_matches_its_definition():
    vae = make_vae()
    batch = {"x": torch.randn(7, 5)}
    torch.manual_seed(11)
    out = elbo_objective(vae, batch, beta=0.3)
    torch.manual_seed(11)
    q = vae.encode(batch)
    z = q.rsample()
    rec = vae.decode(z).log_prob(batch["x"])
    kl = torch.distributions.kl_divergence(
        torch.distributions.Independent(torch.distributions.Normal(q.mean, q.std), 1),
        torch.distributions.Independent(torch.distributions.Normal(torch.zeros_like(q.mean), 1.0), 1),
    )
    torch.testing.assert_close(out.loss, -(rec - 0.3 * kl).mean())
    torch.testing.assert_close(out.elbo, rec - kl)
    torch.testing.assert_close(out.kl_per_dim.sum(), kl.mean())


def test_iwae_objective_is_logmeanexp_of_weights():
    vae = make_vae()
    batch = {"x": torch.randn(4, 5)}
    torch.manual_seed(5)
    out = iwae_objective(vae, batch, k=8)
    torch.manual_seed(5)
    q = vae.encode(batch)
    log_w, _ = log_importance_weights(vae, batch, 8, posterior=q)
    assert log_w.shape == (8, 4)
    torch.testing.assert_close(out.bound, torch.log(torch.exp(log_w).mean(0)))
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())


def test_objectives_by_name_wrap_the_vae_and_interpolate():
    vae = make_vae()
    batch = {"x": torch.randn(3, 5)}
    iwae = build_objective("iwae", vae, SimpleNamespace(iwae_samples=3))
    assert iwae(batch).bound.shape == (3,) and iwae.vae is vae
    assert {name for name, _ in iwae.named_parameters()} == {f"vae.{name}" for name, _ in vae.named_parameters()}
    out = vae(batch)                                   # the VAE alone: one pass, no objective
    assert out.z.shape == (3, 3) and out.likelihood.mean.shape == (3, 5)
    with pytest.raises(ValueError, match="unknown objective 'elbow'; known: elbo, iwae"):
        build_objective("elbow", vae)
    a, b = {"x": torch.randn(2, 5)}, {"x": torch.randn(2, 5)}
    for method in ("linear", "spherical"):
        z, px = vae.interpolate(a, b, steps=5, method=method)
        assert z.shape == (10, 3) and px.mean.shape == (10, 5)
        torch.testing.assert_close(z[0], vae.encode(a).mean[0])
        torch.testing.assert_close(z[4], vae.encode(b).mean[0])
        torch.testing.assert_close(z[9], vae.encode(b).mean[1])


def test_slerp_keeps_the_norm_between_equal_norm_endpoints():
    from vaezoo.core.model import slerp

    a = torch.tensor([[2.0, 0.0]])
    b = torch.tensor([[0.0, 2.0]])
    path = slerp(a, b, torch.linspace(0, 1, 9))
    torch.testing.assert_close(path.norm(dim=-1), torch.full((1, 9), 2.0))
    torch.testing.assert_close(path[0, 4], torch.tensor([2 ** 0.5, 2 ** 0.5]))
