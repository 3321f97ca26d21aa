"""Encoder and decoder networks for images.

The core's blocks (``vaezoo.nn``) serve both directions: ``ConvBlock`` (convolution, norm,
activation, optionally resampling by 2) and ``ResidualBlock`` make the ``stage``s of the
conv encoder (downsampling) and the conv decoder (upsampling); ``mlp`` builds both fully
connected networks. ``LikelihoodHead`` turns the decoder's output into p(x|z).

- encoder(batch) -> (mean, logvar), each [N, D], from batch["x"] [N, C, H, W] in [0, 1] (and the
  embedded class batch["condition"] [N, E] of a conditional recipe, appended to the features)
- decoder(z [M, D_in]) -> vaezoo.Bernoulli | vaezoo.Gaussian | vaezoo.Laplace over [M, C, H, W],
  where D_in is the modality's decoder_input_dim (z with a conditional recipe's class embedding)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaezoo import Bernoulli, Gaussian, Laplace
from vaezoo.nn import ACTIVATIONS, ConvBlock, ConvSpec, Resample, ResidualBlock, append_condition, mlp, plane_sizes

from vaezoo_image.config import ModelConfig


def conv_spec(cfg: ModelConfig) -> ConvSpec:
    return ConvSpec(cfg.kernel_size, cfg.norm, cfg.groups, cfg.activation, cfg.upsampling)


def stage(cin: int, cout: int, spec: ConvSpec, resample: Resample, residual_blocks: int,
          out_size: tuple[int, int] | None = None) -> nn.Sequential:
    """One resolution step: a resampling ConvBlock, then ``residual_blocks`` residual blocks."""
    blocks: list[nn.Module] = [ConvBlock(cin, cout, spec, resample, out_size)]
    blocks += [ResidualBlock(cout, spec) for _ in range(residual_blocks)]
    return nn.Sequential(*blocks)


class LikelihoodHead(nn.Module):
    """Maps decoder outputs [M, C, H, W] to p(x|z); holds the learned per-channel scale."""

    def __init__(self, kind: str, channels: int, scale: float | str):
        super().__init__()
        self.kind = kind
        self.log_scale: nn.Parameter | None = None
        self.fixed_log_scale = 0.0
        if kind != "bernoulli":
            if scale == "learned":
                # Start at 0.1 rather than 1: pixel errors on [0, 1] data are small, and Adam moves
                # a log-scale by about lr per step, so starting at 1 wastes thousands of steps.
                self.log_scale = nn.Parameter(torch.full((channels, 1, 1), math.log(0.1)))
            else:
                self.fixed_log_scale = math.log(float(scale))

    def forward(self, out: torch.Tensor):
        if self.kind == "bernoulli":
            return Bernoulli(out)
        log_scale = self.log_scale if self.log_scale is not None else self.fixed_log_scale
        return (Gaussian if self.kind == "gaussian" else Laplace)(out, log_scale)


class ConvEncoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig, condition_dim: int = 0):
        super().__init__()
        spec = conv_spec(cfg)
        widths = [shape[0]] + list(cfg.channels)
        self.stages = nn.Sequential(*[
            stage(a, b, spec, "down", cfg.residual_blocks) for a, b in zip(widths[:-1], widths[1:])
        ])
        height, width = plane_sizes(shape[1:], len(cfg.channels), cfg.kernel_size)[-1]
        self.to_latent = nn.Linear(widths[-1] * height * width + condition_dim, 2 * latent_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h = append_condition(self.stages(batch["x"]).flatten(1), batch)
        mean, logvar = self.to_latent(h).chunk(2, dim=-1)
        return mean, logvar


class ConvDecoder(nn.Module):
    """The encoder mirrored: a linear map to the smallest feature map, then upsampling stages."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig):
        super().__init__()
        spec = conv_spec(cfg)
        channels = shape[0]
        sizes = plane_sizes(shape[1:], len(cfg.channels), cfg.kernel_size)   # the encoder's sides, largest first
        widths = list(reversed(cfg.channels))        # e.g. [64, 32]
        out_widths = widths[1:] + [widths[-1]]       # e.g. [32, 32]: the last stage keeps its width
        self.start = (widths[0], *sizes[-1])
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self.start)), ACTIVATIONS[cfg.activation]()
        )
        self.stages = nn.Sequential(*[
            stage(a, b, spec, "up", cfg.residual_blocks, out_size=s)
            for a, b, s in zip(widths, out_widths, reversed(sizes[:-1]))
        ])
        # A plain convolution: the outputs are logits or locations, so no norm or activation.
        self.to_pixels = nn.Conv2d(out_widths[-1], channels, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.likelihood = LikelihoodHead(cfg.likelihood, channels, cfg.scale)

    def forward(self, z: torch.Tensor):
        h = self.from_latent(z).view(-1, *self.start)
        return self.likelihood(self.to_pixels(self.stages(h)))


class MLPEncoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig, condition_dim: int = 0):
        super().__init__()
        self.net = mlp([math.prod(shape) + condition_dim, *cfg.hidden, 2 * latent_dim], cfg.activation)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(append_condition(batch["x"].flatten(1), batch)).chunk(2, dim=-1)
        return mean, logvar


class MLPDecoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig):
        super().__init__()
        self.shape = shape
        self.net = mlp([latent_dim, *reversed(cfg.hidden), math.prod(shape)], cfg.activation)
        self.likelihood = LikelihoodHead(cfg.likelihood, shape[0], cfg.scale)

    def forward(self, z: torch.Tensor):
        return self.likelihood(self.net(z).view(-1, *self.shape))


def build_encoder(shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig, condition_dim: int = 0) -> nn.Module:
    """``condition_dim``: the size of the embedded class the encoder reads (0 = none)."""
    return (ConvEncoder if cfg.architecture == "conv" else MLPEncoder)(shape, latent_dim, cfg, condition_dim)


def build_decoder(shape: tuple[int, int, int], input_dim: int, cfg: ModelConfig) -> nn.Module:
    """``input_dim``: what the decoder receives, z and any class embedding (decoder_input_dim)."""
    return (ConvDecoder if cfg.architecture == "conv" else MLPDecoder)(shape, input_dim, cfg)
