"""Priors (standard, mog, vamp) and posteriors (diagonal, IAF): densities against
torch.distributions and definitions, the flow's log-determinant against autograd, the
Monte-Carlo KL, Burda's ordering of the bounds for every combination, and whole runs."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.distributions as D
from click.testing import CliRunner
from safetensors.torch import load_file

from tiny_modality import TINY_RECIPE, make_points
from vaezoo.cli import main
from vaezoo.core.estimators import evaluate
from vaezoo.core.model import make_vae
from vaezoo.core.nn import PseudoInputs
from vaezoo.core.objectives import elbo_objective, elbo_terms
from vaezoo.core.posteriors import IAFPosterior, InverseAutoregressiveFlow, MADEStep
from vaezoo.core.priors import MixturePrior, StandardNormalPrior, VampPrior
from vaezoo.core.errors import RecipeError
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.runs import build_modality, build_vae
from vaezoo.train.trainer import Trainer

PRIOR = {"standard": SimpleNamespace(kind="standard"), "mog": SimpleNamespace(kind="mog", components=3, init_scale=1.0),
         "vamp": SimpleNamespace(kind="vamp", components=4)}
POSTERIOR = {"diagonal": SimpleNamespace(kind="diagonal"),
             "iaf": SimpleNamespace(kind="iaf", flow_steps=2, flow_hidden=16, context_size=0)}


# -- densities -----------------------------------------------------------------------------------


def test_standard_prior_matches_torch():
    z = torch.randn(7, 5)
    expected = D.Independent(D.Normal(torch.zeros(5), torch.ones(5)), 1).log_prob(z)
    torch.testing.assert_close(StandardNormalPrior(5).log_prob(z), expected)


def test_mixture_prior_matches_mixture_same_family():
    torch.manual_seed(0)
    prior = MixturePrior(4, components=3)
    with torch.no_grad():
        prior.logvars.normal_(0, 0.5)
        prior.logits.normal_()
    reference = D.MixtureSameFamily(D.Categorical(logits=prior.logits),
                                    D.Independent(D.Normal(prior.means, torch.exp(0.5 * prior.logvars)), 1))
    z = torch.randn(2, 9, 4) * 2
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z))
    # Samples follow the weights and the components.
    draws = prior.sample(60_000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(draws.mean(0), reference.mean.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(draws.var(0), reference.variance.detach(), atol=0.08, rtol=0.03)


def test_vamp_prior_is_the_mixture_of_the_pseudo_inputs_posteriors():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(3, 4)
    prior = VampPrior(2, PseudoInputs(5, (3,)))
    prior.bind(lambda batch: encoder(batch["x"]).chunk(2, -1))
    z = torch.randn(6, 2)
    mean, logvar = encoder(prior.pseudo_inputs()["x"]).chunk(2, -1)
    components = D.Independent(D.Normal(mean, torch.exp(0.5 * logvar)), 1)
    expected = torch.logsumexp(components.log_prob(z.unsqueeze(1)), dim=1) - math.log(5)   # by definition
    torch.testing.assert_close(prior.log_prob(z), expected)
    # The gradient reaches the pseudo-inputs and the encoder (both train).
    prior.log_prob(z).sum().backward()
    assert prior.pseudo_inputs.values.grad is not None and encoder.weight.grad is not None


# -- the flow --------------------------------------------------------------------------------------


def test_iaf_log_determinant_equals_the_autograd_jacobian():
    torch.manual_seed(0)
    flow = InverseAutoregressiveFlow(dim=3, steps=3, hidden=8, context=2)
    with torch.no_grad():    # away from the identity start, so the check means something
        for p in flow.parameters():
            p.add_(0.5 * torch.randn_like(p))
    h = torch.randn(2)
    for _ in range(3):
        z0 = torch.randn(3)
        jacobian = torch.autograd.functional.jacobian(lambda z: flow(z, h)[0], z0)
        _, log_det = flow(z0, h)
        torch.testing.assert_close(log_det, torch.linalg.slogdet(jacobian)[1], atol=1e-5, rtol=1e-5)


def test_each_made_step_is_autoregressive():
    """Output d of a step depends on the inputs before it in the step's order only."""
    torch.manual_seed(0)
    for reverse in (False, True):
        step = MADEStep(dim=5, hidden=12, context=3, reverse=reverse)
        with torch.no_grad():
            for p in step.parameters():
                p.add_(torch.randn_like(p))
        jacobian = torch.autograd.functional.jacobian(lambda z: step(z, torch.randn(3, generator=torch.Generator().manual_seed(0)))[0],
                                                      torch.randn(5))
        order = step.order
        for d, e in itertools.product(range(5), range(5)):
            if order[e] > order[d]:
                assert jacobian[d, e] == 0, (reverse, d, e)


def test_iaf_posterior_log_prob_of_its_samples_is_base_minus_log_det():
    torch.manual_seed(0)
    base = D.Independent(D.Normal(torch.randn(4, 3), torch.rand(4, 3) + 0.5), 1)
    from vaezoo.core.distributions import DiagonalGaussian

    q0 = DiagonalGaussian(base.base_dist.loc, 2 * torch.log(base.base_dist.scale))
    flow = InverseAutoregressiveFlow(3, 2, 8, 6)
    q = IAFPosterior(q0, flow, torch.randn(4, 6))
    torch.manual_seed(5)
    z, log_q = q.rsample_with_log_prob((2,))
    torch.manual_seed(5)
    z0 = q0.rsample((2,))
    z_again, log_det = flow(z0, q.context.expand(2, 4, 6))
    torch.testing.assert_close(z, z_again)
    torch.testing.assert_close(log_q, base.log_prob(z0) - log_det)
    with pytest.raises(NotImplementedError):
        q.log_prob(z)


# -- bounds ------------------------------------------------------------------------------------------


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))

    def forward(self, batch):
        return tuple(self.net(batch["x"]).chunk(2, -1))


class Decoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6))

    def forward(self, z):
        from vaezoo.core.likelihoods import Gaussian

        return Gaussian(self.net(z), torch.tensor(-1.0))


def small_vae(prior: str, posterior: str):
    torch.manual_seed(0)
    return make_vae(Encoder(), Decoder(), 2, prior=PRIOR[prior], posterior=POSTERIOR[posterior],
                    pseudo_inputs=lambda k: PseudoInputs(k, (6,)))


@pytest.mark.parametrize("prior, posterior", list(itertools.product(PRIOR, POSTERIOR)))
def test_burda_ordering_elbo_iwae_k_iwae_k_prime(prior, posterior):
    """E[ELBO] <= E[IWAE_10] <= E[IWAE_100] for every prior and posterior (Burda et al. 2016)."""
    vae = small_vae(prior, posterior)
    x = make_points(2000, 6, 0.1, seed=3)
    bounds = [-evaluate(vae, [{"x": x}], iw_samples=k, seed=1).iw_nll for k in (1, 10, 100)]
    terms = elbo_terms(vae, {"x": x})
    elbo = terms.elbo.detach()
    # k = 1 is the ELBO: equal within three standard errors of the ELBO's sample mean.
    assert abs(elbo.mean().item() - bounds[0]) < 3 * math.sqrt(2) * elbo.std().item() / math.sqrt(len(x))
    assert bounds[0] < bounds[1] < bounds[2], bounds


def test_monte_carlo_kl_is_the_closed_form_in_expectation():
    """With the standard prior, log q(z|x) - log p(z) at posterior samples averages to the
    closed-form KL: the estimate every other prior and the flow rely on."""
    vae = small_vae("standard", "diagonal")
    batch = {"x": make_points(8, 6, 0.1, seed=0)}
    q = vae.encode(batch)
    z, log_q = q.rsample_with_log_prob((20_000,))
    estimate = (log_q - vae.prior.log_prob(z)).mean(0)
    torch.testing.assert_close(estimate, q.kl_per_dim().sum(-1).detach(), atol=0.03, rtol=0)


def test_the_kl_is_estimated_where_it_has_no_closed_form():
    for prior, posterior in [("mog", "diagonal"), ("standard", "iaf"), ("vamp", "iaf")]:
        vae = small_vae(prior, posterior)
        assert not vae.closed_form_kl
        terms = elbo_terms(vae, {"x": make_points(5, 6, 0.1, seed=0)})
        assert terms.kl_per_dim is None and terms.kl.shape == (5,)
        with pytest.raises(ValueError, match="free bits need the closed-form KL"):
            elbo_objective(vae, {"x": make_points(5, 6, 0.1, seed=0)}, free_bits=0.5)
    assert small_vae("standard", "diagonal").closed_form_kl


# -- recipes and runs ----------------------------------------------------------------------------------


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_free_bits_with_a_monte_carlo_kl_is_refused_in_one_line(tiny_recipe):
    with pytest.raises(RecipeError, match=r"\[objective\] free_bits: free bits need the closed-form KL .* prior.kind = 'mog'"):
        load_recipe(tiny_recipe, ["prior.kind=mog", "objective.free_bits=0.5"])


def test_vamp_needs_pseudo_inputs_and_says_so(tiny_recipe, tmp_path):
    result = cli("train", tiny_recipe, "--run-dir", tmp_path / "run", "--set", "prior.kind=vamp")
    assert result.exit_code == 2 and "[prior] kind: 'vamp' needs pseudo-inputs" in result.output
    assert "can use 'mog'" in result.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", [["prior.kind=mog", "prior.components=3"],
                                       ["posterior.kind=iaf", "posterior.flow_steps=2"],
                                       ["prior.kind=mog", "posterior.kind=iaf", "objective.kind=iwae"]])
def test_variants_train_resume_exactly_and_evaluate(tiny_recipe, tmp_path, overrides):
    recipe = load_recipe(tiny_recipe, overrides)
    full = tmp_path / "full"
    Trainer(recipe, full, progress_bar=False, echo=lambda m: None).fit()
    weights = load_file(str(latest_weights(full)))
    assert any(k.startswith("prior.") for k in weights) == ("prior.kind=mog" in overrides)
    assert any(k.startswith("flow.") for k in weights) == any(o.startswith("posterior.kind=iaf") for o in overrides)

    def stop(trainer, record):
        if record["step"] == 11:
            trainer.request_stop()

    cut = tmp_path / "cut"
    assert Trainer(recipe, cut, on_step=stop, progress_bar=False, echo=lambda m: None).fit().interrupted
    Trainer(load_recipe(cut / "recipe.toml"), cut, resume=True, progress_bar=False, echo=lambda m: None).fit()
    resumed = load_file(str(latest_weights(cut)))
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    figures = json.loads((full / "eval.json").read_text())
    assert figures["kl_per_dim"] == [] and figures["latent_dim"] == 2 and math.isfinite(figures["iw_nll"])
    # Samples come from the chosen prior; reconstructions use the posterior's point.
    result = cli("sample", full, "--n", 4, "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output


def test_the_checked_plugin_builds_the_recipes_prior_and_posterior():
    from vaezoo.plugin.check import check_plugin

    report = check_plugin("tiny_modality:TinyVectors", ["prior.kind=mog", "posterior.kind=iaf"])
    assert math.isfinite(report.loss)


def test_run_directories_before_priors_still_open(tiny_recipe, tmp_path):
    """A recipe.toml without [prior] / [posterior] (every run before them) is a standard,
    diagonal VAE with the same parameter names."""
    recipe = load_recipe(tiny_recipe)
    vae = build_vae(build_modality(recipe, tmp_path))
    assert isinstance(vae.prior, StandardNormalPrior) and vae.flow is None
    assert not any(name.startswith(("prior.", "flow.")) for name in vae.state_dict())
