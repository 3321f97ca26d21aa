"""Encoder and decoder networks for images.

One set of building blocks serves both directions: ``ConvBlock`` (convolution, norm,
activation, optionally resampling by 2), ``ResidualBlock`` and ``stage`` build the conv
encoder (downsampling) and the conv decoder (upsampling); ``mlp`` builds both fully
connected networks. ``LikelihoodHead`` turns the decoder's output into p(x|z).

- encoder(batch) -> (mean, logvar), each [N, D], from batch["x"] [N, C, H, W] in [0, 1]
- decoder(z [M, D]) -> vaezoo.Bernoulli | vaezoo.Gaussian | vaezoo.Laplace over [M, C, H, W]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vaezoo import Bernoulli, Gaussian, Laplace

from vaezoo_image.config import ModelConfig

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}
Resample = Literal["none", "down", "up"]


@dataclass(frozen=True)
class ConvSpec:
    """The per-layer choices shared by every block of a network."""

    kernel_size: int = 3
    norm: str = "none"
    groups: int = 8
    activation: str = "relu"
    upsampling: str = "transposed"

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "ConvSpec":
        return cls(cfg.kernel_size, cfg.norm, cfg.groups, cfg.activation, cfg.upsampling)


def downsampled(size: int, kernel_size: int) -> int:
    """Output side of a stride-2 convolution with 'same' padding (kernel_size // 2)."""
    return (size + 2 * (kernel_size // 2) - kernel_size) // 2 + 1


class ConvBlock(nn.Sequential):
    """Convolution -> normalization -> activation; ``resample`` halves or doubles the size.

    Upsampling needs the exact target side (``out_size``) because downsampling an odd side
    rounds up (7 -> 4), so doubling alone would not restore it.
    """

    def __init__(self, cin: int, cout: int, spec: ConvSpec, resample: Resample = "none", out_size: int | None = None):
        k, pad = spec.kernel_size, spec.kernel_size // 2
        bias = spec.norm == "none"  # a norm layer's shift makes a conv bias redundant
        layers: list[nn.Module]
        if resample == "down":
            layers = [nn.Conv2d(cin, cout, k, stride=2, padding=pad, bias=bias)]
        elif resample == "up" and spec.upsampling == "transposed":
            in_size = downsampled(out_size, k)
            extra = out_size - ((in_size - 1) * 2 - 2 * pad + k)  # 0 or 1: which of the two sides it was
            layers = [nn.ConvTranspose2d(cin, cout, k, stride=2, padding=pad, output_padding=extra, bias=bias)]
        elif resample == "up":
            layers = [nn.Upsample(size=(out_size, out_size), mode="nearest"), nn.Conv2d(cin, cout, k, padding=pad, bias=bias)]
        else:
            layers = [nn.Conv2d(cin, cout, k, padding=pad, bias=bias)]
        if spec.norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        elif spec.norm == "group":
            layers.append(nn.GroupNorm(spec.groups, cout))
        layers.append(ACTIVATIONS[spec.activation]())
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + two ConvBlocks of x, at constant width and size."""

    def __init__(self, channels: int, spec: ConvSpec):
        super().__init__()
        self.body = nn.Sequential(ConvBlock(channels, channels, spec), ConvBlock(channels, channels, spec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stage(cin: int, cout: int, spec: ConvSpec, resample: Resample, residual_blocks: int, out_size: int | None = None) -> nn.Sequential:
    """One resolution step: a resampling ConvBlock, then ``residual_blocks`` residual blocks."""
    blocks = [ConvBlock(cin, cout, spec, resample, out_size)]
    blocks += [ResidualBlock(cout, spec) for _ in range(residual_blocks)]
    return nn.Sequential(*blocks)


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers through ``sizes``, an activation after each but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


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
    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig):
        super().__init__()
        spec = ConvSpec.from_config(cfg)
        channels, size = shape[0], shape[1]
        widths = [channels] + list(cfg.channels)
        self.stages = nn.Sequential(*[
            stage(a, b, spec, "down", cfg.residual_blocks) for a, b in zip(widths[:-1], widths[1:])
        ])
        for _ in cfg.channels:
            size = downsampled(size, cfg.kernel_size)
        self.to_latent = nn.Linear(widths[-1] * size * size, 2 * latent_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stages(batch["x"]).flatten(1)
        mean, logvar = self.to_latent(h).chunk(2, dim=-1)
        return mean, logvar


class ConvDecoder(nn.Module):
    """The encoder mirrored: a linear map to the smallest feature map, then upsampling stages."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig):
        super().__init__()
        spec = ConvSpec.from_config(cfg)
        channels, size = shape[0], shape[1]
        sizes = [size]  # the encoder's sides, largest first
        for _ in cfg.channels:
            sizes.append(downsampled(sizes[-1], cfg.kernel_size))
        widths = list(reversed(cfg.channels))        # e.g. [64, 32]
        out_widths = widths[1:] + [widths[-1]]       # e.g. [32, 32]: the last stage keeps its width
        self.start = (widths[0], sizes[-1])
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim, widths[0] * sizes[-1] ** 2), ACTIVATIONS[cfg.activation]()
        )
        self.stages = nn.Sequential(*[
            stage(a, b, spec, "up", cfg.residual_blocks, out_size=s)
            for a, b, s in zip(widths, out_widths, reversed(sizes[:-1]))
        ])
        # A plain convolution: the outputs are logits or locations, so no norm or activation.
        self.to_pixels = nn.Conv2d(out_widths[-1], channels, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.likelihood = LikelihoodHead(cfg.likelihood, channels, cfg.scale)

    def forward(self, z: torch.Tensor):
        width, side = self.start
        h = self.from_latent(z).view(-1, width, side, side)
        return self.likelihood(self.to_pixels(self.stages(h)))


class MLPEncoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig):
        super().__init__()
        self.net = mlp([math.prod(shape), *cfg.hidden, 2 * latent_dim], cfg.activation)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(batch["x"].flatten(1)).chunk(2, dim=-1)
        return mean, logvar


class MLPDecoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig):
        super().__init__()
        self.shape = shape
        self.net = mlp([latent_dim, *reversed(cfg.hidden), math.prod(shape)], cfg.activation)
        self.likelihood = LikelihoodHead(cfg.likelihood, shape[0], cfg.scale)

    def forward(self, z: torch.Tensor):
        return self.likelihood(self.net(z).view(-1, *self.shape))


def build_encoder(shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig) -> nn.Module:
    return (ConvEncoder if cfg.architecture == "conv" else MLPEncoder)(shape, latent_dim, cfg)


def build_decoder(shape: tuple[int, int, int], latent_dim: int, cfg: ModelConfig) -> nn.Module:
    return (ConvDecoder if cfg.architecture == "conv" else MLPDecoder)(shape, latent_dim, cfg)
