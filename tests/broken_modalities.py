"""Modalities that break the protocol in one way each, for `vaezoo plugins check` tests.

Each is the tiny modality with one member wrong; recipes and the check name them by import
path, e.g. ``"broken_modalities:UnsummedLogProb"`` (tests/ is on sys.path through conftest.py).
"""

from __future__ import annotations

import torch
from torch import nn

from tiny_modality import Decoder, Encoder, TinyVectors
from vaezoo import Gaussian


class UnsummedGaussian(Gaussian):
    def log_prob(self, x, mask=None):
        return self.elementwise_log_prob(x)  # [N, C]: forgot to sum per example


class UnsummedLogProb(TinyVectors):
    def build_decoder(self):
        decoder = super().build_decoder()
        decoder.forward = lambda z: UnsummedGaussian(decoder.net(z), decoder.log_scale)
        return decoder


class WrongLatentSize(TinyVectors):
    def build_encoder(self):
        return Encoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim + 1)


class DetachedDecoder(TinyVectors):
    """The decoder's output is cut from its parameters: nothing would ever train it."""

    def build_decoder(self):
        decoder = super().build_decoder()
        decoder.forward = lambda z: Gaussian(decoder.net(z).detach(), decoder.log_scale.detach())
        return decoder


class FixedBatchDecoder(nn.Module):
    """Assumes z has as many rows as the batch it was built for: breaks importance sampling."""

    def __init__(self, inner: Decoder):
        super().__init__()
        self.inner = inner

    def forward(self, z):
        if z.shape[0] != 4:
            raise RuntimeError(f"expected 4 latent rows, got {z.shape[0]}")
        return self.inner(z)


class BatchSizeBound(TinyVectors):
    def build_decoder(self):
        return FixedBatchDecoder(super().build_decoder())


class NoDataAvailable(TinyVectors):
    def example_batch(self, n=4):
        raise FileNotFoundError("/data/vectors.csv")


class NotAModule(TinyVectors):
    def build_encoder(self):
        return lambda batch: (torch.zeros(len(batch["x"]), 16), torch.zeros(len(batch["x"]), 16))


class NeedsExampleRecipe(TinyVectors):
    """Takes the example recipe's values, proving it reaches the check."""

    example_recipe = {"latent": {"dim": 3}, "data": {"dim": 5, "n": 16}}


class TensorDiscriminator(TinyVectors):
    """(API 1.3) Its own discriminator returns a bare tensor, not a list of scales."""

    def build_discriminator(self, options):
        return nn.Linear(8, 1)
