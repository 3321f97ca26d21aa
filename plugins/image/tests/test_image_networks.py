"""Encoder/decoder shapes, likelihood choices and the [model] section's checks."""

from __future__ import annotations

import pytest
import torch

from vaezoo import VAE, Bernoulli, Gaussian, Laplace
from vaezoo.core.errors import RecipeError
from vaezoo.core.objectives import elbo_objective
from vaezoo_image import ImageModality

from image_helpers import make_recipe

LATENT = 3


def build(tmp_path, data: dict | None = None, **model) -> tuple[ImageModality, VAE]:
    m = ImageModality(make_recipe({"path": str(tmp_path), "size": 8, **(data or {})}, model, latent=LATENT))
    return m, VAE(m.build_encoder(), m.build_decoder(), LATENT)


@pytest.mark.parametrize(
    "size, model",
    [
        (8, {}),
        (8, {"norm": "batch", "residual_blocks": 1}),
        (8, {"norm": "group", "groups": 4, "channels": [8, 16], "upsampling": "nearest"}),
        (15, {"channels": [4, 8, 8], "kernel_size": 5}),   # odd sides: 15 -> 8 -> 4 -> 2 and back
        (14, {"channels": [4, 8, 8], "upsampling": "nearest"}),
        (8, {"architecture": "mlp", "hidden": [32, 16]}),
    ],
)
@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_shapes_and_gradients(tmp_path, size, model, color):
    m, vae = build(tmp_path, {"size": size, "color": color}, **model)
    c = 1 if color == "gray" else 3
    x = torch.rand(5, c, size, size)
    mean, logvar = vae.encoder({"x": x})
    assert mean.shape == logvar.shape == (5, LATENT)
    px = vae.decoder(torch.randn(7, LATENT))
    assert isinstance(px, Bernoulli) and px.mean.shape == (7, c, size, size)
    out = elbo_objective(vae, {"x": x})
    out.loss.backward()
    assert all(p.grad is not None for p in vae.parameters())


@pytest.mark.parametrize(
    "likelihood, scale, cls, learned",
    [
        ("gaussian", "learned", Gaussian, True),
        ("gaussian", 0.2, Gaussian, False),
        ("laplace", "learned", Laplace, True),
        ("laplace", 0.5, Laplace, False),
    ],
)
@pytest.mark.parametrize("architecture", ["conv", "mlp"])
def test_likelihoods(tmp_path, likelihood, scale, cls, learned, architecture):
    m, vae = build(tmp_path, {"color": "rgb"}, likelihood=likelihood, scale=scale, architecture=architecture)
    px = vae.decoder(torch.randn(4, LATENT))
    assert isinstance(px, cls)
    assert px.log_prob(torch.rand(4, 3, 8, 8)).shape == (4,)
    scales = [p for n, p in vae.named_parameters() if "log_scale" in n]
    if learned:
        assert len(scales) == 1 and scales[0].shape == (3, 1, 1)   # one scale per channel
    else:
        assert not scales and torch.allclose(px.log_scale.exp(), torch.tensor(float(scale)))


def test_bernoulli_on_intensities(tmp_path):
    _, vae = build(tmp_path)
    px = vae.decoder(torch.zeros(2, LATENT))
    lp = px.log_prob(torch.full((2, 1, 8, 8), 0.5))
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    assert px.sample().shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"kernel_size": 4}, "kernel_size: must be odd"),
        ({"norm": "group", "groups": 5, "channels": [10, 12]}, "does not divide \\[12\\]"),
        ({"likelihood": "poisson"}, "expected one of 'bernoulli', 'gaussian', 'laplace'"),
        ({"scale": -1.0}, "must be > 0"),
        ({"channelz": [3]}, "did you mean 'channels'"),
    ],
)
def test_model_config_errors(tmp_path, model, message):
    with pytest.raises(RecipeError, match=message):
        make_recipe({"path": str(tmp_path)}, model)
