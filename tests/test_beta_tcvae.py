"""beta-TCVAE: the KL decomposition (MI + TC + dimension-wise KL), the total-correlation
estimator against a Gaussian of known correlation, the objective's weights, and runs."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from vaezoo.core.distributions import DiagonalGaussian
from vaezoo.core.errors import RecipeError
from vaezoo.core.model import make_vae
from vaezoo.core.objectives import BetaTCVAE, build_objective, decompose_kl
from vaezoo.core.priors import StandardNormalPrior
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.trainer import Trainer

from test_priors_posteriors import Decoder, Encoder


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.9])
def test_total_correlation_of_a_correlated_gaussian(rho):
    """Posteriors N(mu_n, s^2 I) whose means are draws of N(0, [[1, rho], [rho, 1]]): their
    aggregate is N(0, [[1 + s^2, rho], [rho, 1 + s^2]]), whose total correlation is
    -log(1 - r^2) / 2 with r = rho / (1 + s^2). With the whole set in one batch (data set
    size = batch size) the estimator's only error is sampling noise."""
    n, s = 3000, 0.3
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    means = torch.randn(n, 2, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    q = DiagonalGaussian(means, torch.full((n, 2), math.log(s**2), dtype=torch.float64))
    z = q.rsample()
    parts = decompose_kl(q, z, StandardNormalPrior(2).log_prob(z), dataset_size=n)
    r = rho / (1 + s**2)
    assert parts.total_correlation.mean().item() == pytest.approx(-0.5 * math.log(1 - r**2), abs=0.03)


def test_the_three_terms_add_up_to_the_monte_carlo_kl():
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.randn(32, 4), torch.randn(32, 4) * 0.3)
    z = q.rsample()
    log_p = StandardNormalPrior(4).log_prob(z)
    parts = decompose_kl(q, z, log_p, dataset_size=1000)
    total = parts.mutual_information + parts.total_correlation + parts.dimension_wise_kl
    torch.testing.assert_close(total, q.log_prob(z) - log_p)
    # The own example weighs 1/N in q(z), so each MI term is at most log N.
    assert parts.mutual_information.max() <= math.log(1000) + 1e-5


def test_the_weights_scale_their_terms():
    torch.manual_seed(0)
    vae = make_vae(Encoder(), Decoder(), 2)
    batch = {"x": torch.randn(16, 6)}

    def loss(alpha, beta, gamma):
        objective = build_objective("beta-tcvae", vae, SimpleNamespace(tc_alpha=alpha, tc_gamma=gamma), dataset_size=500)
        torch.manual_seed(3)
        return objective(batch, beta=beta)

    base = loss(1.0, 1.0, 1.0)
    rec = base.reconstruction.mean()
    mi, tc, dim_kl = base.extra["mi"], base.extra["tc"], base.extra["dimension_wise_kl"]
    torch.testing.assert_close(base.loss, -rec + mi + tc + dim_kl)
    torch.testing.assert_close(loss(2.0, 6.0, 0.5).loss, -rec + 2 * mi + 6 * tc + 0.5 * dim_kl)
    torch.testing.assert_close(base.kl.mean(), mi + tc + dim_kl)


def test_beta_tcvae_refuses_what_it_cannot_do(tiny_recipe):
    vae = make_vae(Encoder(), Decoder(), 2)
    with pytest.raises(ValueError, match="needs the training set's size"):
        BetaTCVAE(vae, None)
    iaf = make_vae(Encoder(), Decoder(), 2, posterior=SimpleNamespace(kind="iaf", flow_steps=1, flow_hidden=8, context_size=0))
    with pytest.raises(ValueError, match="needs the diagonal posterior"):
        BetaTCVAE(iaf, None, dataset_size=10)
    with pytest.raises(RecipeError, match=r"\[objective\] kind: 'beta-tcvae' needs posterior.kind = 'diagonal'"):
        load_recipe(tiny_recipe, ["objective.kind=beta-tcvae", "posterior.kind=iaf"])
    with pytest.raises(RecipeError, match="free_bits works with kind = 'elbo' only, not 'beta-tcvae'"):
        load_recipe(tiny_recipe, ["objective.kind=beta-tcvae", "objective.free_bits=0.1"])


@pytest.mark.parametrize("prior", ["standard", "mog"])
def test_beta_tcvae_trains_with_its_terms_in_the_log(tiny_recipe, tmp_path, prior):
    recipe = load_recipe(tiny_recipe, ["objective.kind=beta-tcvae", "objective.beta=4", f"prior.kind={prior}",
                                       "eval.iw_samples=5"])
    result = Trainer(recipe, tmp_path / "run", progress_bar=False, echo=lambda m: None).fit()
    assert result.steps == 24
    train = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]
    assert all({"mi", "tc", "dimension_wise_kl"} <= set(r) for r in train)
    assert all(r["kl"] == pytest.approx(r["mi"] + r["tc"] + r["dimension_wise_kl"], abs=1e-4) for r in train)
    assert math.isfinite(json.loads((tmp_path / "run" / "eval.json").read_text())["iw_nll"])
