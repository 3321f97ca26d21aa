"""The adversarial stage (VAE-GAN): losses against their closed forms, the generic
discriminators, gradient isolation, the start step, resume bit for bit, the refusals."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from tiny_modality import TINY_GAN_RECIPE, TINY_RECIPE, TinyImages
from vaezoo.cli import main
from vaezoo.config.recipe import AdversarialConfig
from vaezoo.core.adversarial import AdversarialObjective, discriminator_loss, feature_matching, generator_loss
from vaezoo.core.discriminators import MultiScaleDiscriminator, PatchDiscriminator, build_discriminator
from vaezoo.core.errors import RecipeError
from vaezoo.core.objectives import build_objective
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.hooks import Hook
from vaezoo.train.hooks.adversarial import AdversarialStage
from vaezoo.train.runs import build_vae
from vaezoo.train.trainer import Trainer

QUIET = ["eval.at_end=false", "train.samples=0", "train.tensorboard=false"]


def records(run, split="train"):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == split]


def gan_recipe(tmp_path, *overrides):
    (tmp_path / "gan.toml").write_text(TINY_GAN_RECIPE)
    return load_recipe(tmp_path / "gan.toml", [*QUIET, *overrides])


# -- the losses -----------------------------------------------------------------------------------


def verdicts(*logits):
    """A two-scale discriminator output: a feature map, then the logits."""
    return [[torch.ones(2, 3), d] for d in logits]


def test_gan_losses_match_their_closed_forms():
    g = torch.Generator().manual_seed(0)
    r1, r2, f1, f2 = (torch.randn(4, 1, 3, 3, generator=g) for _ in range(4))
    real, fake = verdicts(r1, r2), verdicts(f1, f2)
    bce = F.binary_cross_entropy_with_logits
    # non-saturating: the logistic loss, real -> 1, fake -> 0; averaged over the two scales
    expected = sum(bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f)) for r, f in ((r1, f1), (r2, f2))) / 2
    assert torch.allclose(discriminator_loss("non-saturating", real, [fake]), expected)
    expected_g = (bce(f1, torch.ones_like(f1)) + bce(f2, torch.ones_like(f2))) / 2
    assert torch.allclose(generator_loss("non-saturating", fake), expected_g)
    # least squares: targets 1 and 0
    expected = sum(F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f)) for r, f in ((r1, f1), (r2, f2))) / 2
    assert torch.allclose(discriminator_loss("least-squares", real, [fake]), expected)
    assert torch.allclose(generator_loss("least-squares", fake), (F.mse_loss(f1, torch.ones_like(f1)) + F.mse_loss(f2, torch.ones_like(f2))) / 2)
    # hinge
    expected = sum((1 - r).clamp(min=0).mean() + (1 + f).clamp(min=0).mean() for r, f in ((r1, f1), (r2, f2))) / 2
    assert torch.allclose(discriminator_loss("hinge", real, [fake]), expected)
    assert torch.allclose(generator_loss("hinge", fake), -(f1.mean() + f2.mean()) / 2)
    # two kinds of fakes weigh half each
    other = verdicts(f2, f1)
    both = discriminator_loss("hinge", real, [fake, other])
    real_part = sum((1 - r).clamp(min=0).mean() for r in (r1, r2)) / 2
    fake_part = sum((1 + f).clamp(min=0).mean() for f in (f1, f2)) / 2
    assert torch.allclose(both, real_part + fake_part)


def test_feature_matching_is_the_mean_distance_of_the_features_without_the_logits():
    a1, a2, b1, b2 = torch.zeros(2, 4), torch.zeros(2, 6), torch.full((2, 4), 0.5), torch.full((2, 6), -2.0)
    real = [[a1, a2, torch.zeros(2, 1)]]
    fake = [[b1, b2, torch.full((2, 1), 100.0)]]     # the logits differ wildly: they must not count
    assert torch.allclose(feature_matching(real, fake, "l1"), torch.tensor((0.5 + 2.0) / 2))
    assert torch.allclose(feature_matching(real, fake, "l2"), torch.tensor((0.25 + 4.0) / 2))


# -- the discriminators ---------------------------------------------------------------------------


def test_generic_discriminators_shapes_and_spectral_norm():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28)
    patch = build_discriminator("patch", (1, 28, 28), channels=8, layers=3)
    assert isinstance(patch, PatchDiscriminator)
    (scale,) = patch(x)
    assert [tuple(t.shape) for t in scale] == [(5, 8, 14, 14), (5, 16, 7, 7), (5, 32, 3, 3), (5, 1, 3, 3)]
    assert len(patch(x[:, 0])) == 1                       # [N, H, W] is read as one channel
    # Spectral norm: after power iterations the largest singular value of every weight is 1.
    for _ in range(200):
        patch(x)
    for module in patch.modules():
        if isinstance(module, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2)
            assert sigma == pytest.approx(1.0, abs=0.01)
    # A small plane gets fewer layers instead of an empty one.
    small = build_discriminator("patch", (4, 4), channels=4, layers=3)
    assert [tuple(t.shape) for t in small(torch.rand(2, 4, 4))[0]] == [(2, 4, 2, 2), (2, 1, 2, 2)]
    # Multi-scale: each scale halves the last axis (time) only.
    mel = build_discriminator("multiscale", (1, 16, 40), channels=4, layers=2, scales=3)
    assert isinstance(mel, MultiScaleDiscriminator)
    out = mel(torch.rand(2, 1, 16, 40))
    assert [tuple(scale[-1].shape) for scale in out] == [(2, 1, 4, 10), (2, 1, 4, 5), (2, 1, 4, 2)]
    with pytest.raises(ValueError, match="image-like"):
        build_discriminator("patch", (16,))
    with pytest.raises(ValueError, match="fewer scales"):
        build_discriminator("multiscale", (1, 16, 6), scales=4)


# -- the generator's objective --------------------------------------------------------------------


def test_the_generator_loss_adds_the_weighted_terms_and_keeps_the_elbo_honest(tmp_path):
    recipe = gan_recipe(tmp_path)
    modality = TinyImages(recipe, tmp_path)
    torch.manual_seed(0)
    vae = build_vae(modality)
    batch = {"x": modality.dataset("train").tensors[0][:8]}
    disc = build_discriminator("patch", (1, 4, 4), channels=4)
    options = AdversarialConfig(enabled=True, adversarial_weight=0.3, feature_matching_weight=0.7, likelihood_weight=0.25,
                                prior_samples=False)
    inner = build_objective("elbo", vae)
    wrapped = AdversarialObjective(inner, disc, options)
    torch.manual_seed(1)
    plain = inner(batch, beta=0.5)
    torch.manual_seed(1)
    wrapped.active = False
    assert torch.equal(wrapped(batch, beta=0.5).loss, plain.loss) and wrapped.take_pairs() == []
    torch.manual_seed(1)
    wrapped.active = True
    out = wrapped(batch, beta=0.5)
    fake = plain.likelihood.mean
    adv = generator_loss("hinge", disc(fake))
    fm = feature_matching(disc(batch["x"]), disc(fake))
    expected = plain.loss + 16 * (0.3 * adv + 0.7 * fm) + 0.75 * plain.reconstruction.mean()
    assert torch.allclose(out.loss, expected)
    assert torch.equal(out.elbo, plain.elbo) and torch.equal(out.reconstruction, plain.reconstruction)
    assert torch.allclose(out.extra["gen_adversarial"], adv) and torch.allclose(out.extra["feature_matching"], fm)
    ((real, fakes),) = wrapped.take_pairs()
    assert torch.equal(real, batch["x"]) and len(fakes) == 1 and not fakes[0].requires_grad
    # Missing entries of x are filled with the reconstruction: missingness tells the discriminator nothing.
    mask = torch.ones_like(batch["x"], dtype=torch.bool)
    mask[:, :, 0, 0] = False
    wrapped({"x": batch["x"], "mask": mask})
    ((real, fakes),) = wrapped.take_pairs()
    assert torch.equal(real[:, :, 0, 0], fakes[0][:, :, 0, 0]) and torch.equal(real[:, :, 1:], batch["x"][:, :, 1:])
    # IWAE's bound has no likelihood term of its own to reweigh.
    with pytest.raises(ValueError, match="likelihood_weight"):
        AdversarialObjective(build_objective("iwae", vae), disc, options)


# -- training -------------------------------------------------------------------------------------


class Watch(Hook):
    """Snapshots around the VAE's step (it runs after the adversarial hook at every event)."""

    name = "watch"

    def __init__(self):
        self.problems = []

    def before_step(self, trainer):
        stage = trainer.hook("adversarial")
        self.disc = [p.detach().clone() for p in stage.discriminator.parameters()]

    def after_backward(self, trainer):
        stage = trainer.hook("adversarial")
        # The VAE's backward pass reached neither the discriminator's weights nor its gradients.
        if not all(torch.equal(a, b) for a, b in zip(self.disc, stage.discriminator.parameters())):
            self.problems.append(f"step {trainer.state.step + 1}: the VAE step moved the discriminator")
        if any(p.grad is not None for p in stage.discriminator.parameters()):
            self.problems.append(f"step {trainer.state.step + 1}: the VAE step left discriminator gradients")


def test_gradient_isolation_both_ways(tmp_path, monkeypatch):
    """The VAE step never moves the discriminator; the discriminator step never moves the VAE."""
    original = AdversarialStage.after_step
    seen = {"discriminator_steps": 0, "vae_moved": 0, "disc_moved": 0}

    def checked_after_step(self, trainer, record):
        vae_before = [p.detach().clone() for p in trainer.vae.parameters()]
        grads_before = [None if p.grad is None else p.grad.clone() for p in trainer.vae.parameters()]
        disc_before = [p.detach().clone() for p in self.discriminator.parameters()]
        original(self, trainer, record)
        if "disc_loss" in record:
            seen["discriminator_steps"] += 1
            seen["vae_moved"] += not all(torch.equal(a, b) for a, b in zip(vae_before, trainer.vae.parameters()))
            seen["vae_moved"] += not all((a is None and p.grad is None) or (a is not None and torch.equal(a, p.grad))
                                         for a, p in zip(grads_before, trainer.vae.parameters()))
            seen["disc_moved"] += not all(torch.equal(a, b) for a, b in zip(disc_before, self.discriminator.parameters()))

    monkeypatch.setattr(AdversarialStage, "after_step", checked_after_step)
    watch = Watch()
    Trainer(gan_recipe(tmp_path), tmp_path / "run", hooks=[watch], progress_bar=False, echo=lambda m: None).fit()
    assert watch.problems == []
    assert seen == {"discriminator_steps": 20, "vae_moved": 0, "disc_moved": 20}   # 24 steps, the phase from step 5


def test_freeze_encoder_moves_the_decoder_alone_in_the_phase(tmp_path):
    class Encoders(Hook):
        name = "encoders"
        snapshots: dict = {}

        def before_step(self, trainer):
            if trainer.state.step == 4:
                self.snapshots["start"] = {k: v.clone() for k, v in trainer.vae.state_dict().items()}

    hook = Encoders()
    trainer = Trainer(gan_recipe(tmp_path, "adversarial.freeze_encoder=true"), tmp_path / "run", hooks=[hook],
                      progress_bar=False, echo=lambda m: None)
    trainer.fit()
    start, end = hook.snapshots["start"], trainer.vae.state_dict()
    assert all(torch.equal(start[k], end[k]) for k in start if k.startswith("encoder."))
    assert not all(torch.equal(start[k], end[k]) for k in start if k.startswith("decoder."))


def test_the_phase_starts_at_the_configured_step(tmp_path):
    run = tmp_path / "run"
    Trainer(gan_recipe(tmp_path, "adversarial.start_step=6"), run, progress_bar=False, echo=lambda m: None).fit()
    train = records(run)
    assert [r["step"] for r in train if "disc_loss" in r] == list(range(7, 25))
    assert [r["step"] for r in train if "gen_adversarial" in r] == list(range(7, 25))
    (event,) = [r for r in records(run, "event") if r["event"] == "adversarial_start"]
    assert event["step"] == 6 and event["discriminator"] == "PatchDiscriminator"
    # after_kl_warmup: the linear warm-up of TINY_RECIPE ends at step 10
    later = tmp_path / "later"
    Trainer(gan_recipe(tmp_path, "adversarial.after_kl_warmup=true"), later, progress_bar=False, echo=lambda m: None).fit()
    assert min(r["step"] for r in records(later) if "disc_loss" in r) == 11


def test_resume_with_the_stage_on_equals_the_uninterrupted_run(tmp_path):
    """Interrupted inside the phase, with bf16 autocast and gradient accumulation on, resumed:
    the VAE, the discriminator and its Adam state, and metrics.jsonl equal the run that was
    never stopped, bit for bit."""
    overrides = ["train.grad_accum=2", "train.bf16=true", "train.epochs=4"]
    full = tmp_path / "full"
    Trainer(gan_recipe(tmp_path, *overrides), full, progress_bar=False, echo=lambda m: None).fit()

    def stop_at_7(trainer, record):
        if record["step"] == 7:
            trainer.request_stop()

    cut = tmp_path / "cut"
    assert Trainer(gan_recipe(tmp_path, *overrides), cut, on_step=stop_at_7, progress_bar=False,
                   echo=lambda m: None).fit().interrupted
    Trainer(load_recipe(cut / "recipe.toml"), cut, resume=True, progress_bar=False, echo=lambda m: None).fit()
    from safetensors.torch import load_file

    for name in ("model.safetensors", "trainer_state.safetensors"):
        a = load_file(str(latest_weights(cut).parent / name))
        b = load_file(str(latest_weights(full).parent / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    state = load_file(str(latest_weights(cut).parent / "trainer_state.safetensors"))
    assert any(k.startswith("hooks/adversarial/discriminator/") for k in state)
    assert any(k.startswith("hooks/adversarial/optimizer/") for k in state)
    assert records(cut) == records(full)
    assert sum("disc_loss" in r for r in records(full)) == 16 - 4      # 4 steps per epoch x 4, the phase from step 5


def test_validation_keeps_the_latest_weights_in_the_phase(tmp_path):
    run = tmp_path / "run"
    said: list[str] = []
    Trainer(gan_recipe(tmp_path, "train.early_stopping_patience=1"), run, progress_bar=False, echo=said.append).fit()
    # A plain phase first with early stopping on: the run says the phase may never come.
    assert any(line.startswith("warning: train.early_stopping_patience may end the run before the adversarial "
                               "phase begins at step 4") for line in said)
    # No early stop (the ELBO does not rule the phase), and best.safetensors is the last step's.
    from safetensors import safe_open

    with safe_open(str(run / "best.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "24"


# -- refusals -------------------------------------------------------------------------------------


def test_a_modality_without_image_like_inputs_is_refused_with_one_line(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(run), "--set", "adversarial.enabled=true",
                                       "--no-progress"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("run directory:")]
    assert len(lines) == 1 and "[adversarial] enabled" in lines[0] and "float32 tensors of shape [N, 6]" in lines[0]
    assert "Traceback" not in result.output and not run.exists()


def test_iwae_with_a_replaced_likelihood_is_refused_by_the_recipe(tmp_path):
    (tmp_path / "gan.toml").write_text(TINY_GAN_RECIPE)
    with pytest.raises(RecipeError, match="likelihood_weight"):
        load_recipe(tmp_path / "gan.toml", ['objective.kind="iwae"', "adversarial.likelihood_weight=0.5"])
    with pytest.raises(RecipeError, match="after_kl_warmup"):
        load_recipe(tmp_path / "gan.toml", ['objective.kl_schedule="cyclical"', "adversarial.after_kl_warmup=true"])


class BadDiscriminatorImages(TinyImages):
    def build_discriminator(self, options):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))   # a tensor, not a list of scales


class CrashingDiscriminatorImages(TinyImages):
    def build_discriminator(self, options):
        return torch.nn.Linear(3, 1)      # cannot read x


class OwnDiscriminatorImages(TinyImages):
    def build_discriminator(self, options):
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.LeakyReLU(0.2))
        head = torch.nn.Linear(8, 1)

        class Own(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net, self.head = net, head

            def forward(self, x):
                h = self.net(x)
                return [[h, self.head(h)]]

        return Own()


def test_a_plugin_discriminator_is_used_and_a_wrong_one_is_named(tmp_path):
    recipe = gan_recipe(tmp_path, 'modality="test_adversarial:OwnDiscriminatorImages"')
    trainer = Trainer(recipe, tmp_path / "own", progress_bar=False, echo=lambda m: None)
    trainer.fit()
    assert type(trainer.hook("adversarial").discriminator).__name__ == "Own"
    assert any("disc_loss" in r for r in records(tmp_path / "own"))
    run = tmp_path / "bad"
    result = CliRunner().invoke(main, ["train", str(tmp_path / "gan.toml"), "--run-dir", str(run), "--no-progress",
                                       "--set", 'modality="test_adversarial:BadDiscriminatorImages"'])
    assert result.exit_code == 2, result.output
    assert "returned Tensor; a discriminator returns a list" in result.stderr and not run.exists()
    result = CliRunner().invoke(main, ["train", str(tmp_path / "gan.toml"), "--run-dir", str(run), "--no-progress",
                                       "--set", 'modality="test_adversarial:CrashingDiscriminatorImages"'])
    assert result.exit_code == 2 and "discriminator fails on x of shape [2, 1, 4, 4]: RuntimeError" in result.stderr
    assert "Traceback" not in result.output and not run.exists()


def test_the_discriminator_does_not_change_the_vae_of_a_plain_run(tmp_path):
    """Switching the stage on with a start after the last step leaves the VAE's training as it
    was: the discriminator is seeded apart and draws nothing from the training's random stream."""
    plain, late = tmp_path / "plain", tmp_path / "late"
    Trainer(gan_recipe(tmp_path, "adversarial.enabled=false"), plain, progress_bar=False, echo=lambda m: None).fit()
    Trainer(gan_recipe(tmp_path, "adversarial.start_step=1000"), late, progress_bar=False, echo=lambda m: None).fit()
    from safetensors.torch import load_file

    a, b = load_file(str(latest_weights(plain))), load_file(str(latest_weights(late)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert records(plain) == records(late)



@pytest.mark.parametrize("overrides", [['objective.kind="iwae"'], ['objective.kind="beta-tcvae"', "adversarial.likelihood_weight=0.5"],
                                       ['prior.kind="mog"', 'posterior.kind="iaf"'], ['prior.kind="vamp"', "prior.components=3"],
                                       ['modality="tiny_modality:LabelledTinyImages"', "condition.enabled=true"]],
                         ids=["iwae", "beta-tcvae", "mog+iaf", "vamp", "conditional"])
def test_the_stage_combines_with_every_objective_prior_and_posterior(tmp_path, overrides):
    run = tmp_path / "run"
    Trainer(gan_recipe(tmp_path, "train.epochs=1", *overrides), run, progress_bar=False, echo=lambda m: None).fit()
    train = records(run)
    assert [r["step"] for r in train if "disc_loss" in r] == [5, 6, 7, 8]
    assert all(isinstance(r["elbo"], float) and r["elbo"] == r["elbo"] for r in train)   # finite, logged
