"""The mel-spectrogram encoder and decoder, built from the core's blocks (``vaezoo.nn``).

- encoder(batch) -> (mean, logvar), each [N, D], from batch["x"] [N, 1, n_mels, T]
- decoder(z [M, D]) -> vaezoo.Gaussian | vaezoo.Laplace over [M, 1, n_mels, T]
  (normalised log-mel), with a learned scale per mel band or a fixed one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaezoo import Gaussian, Laplace
from vaezoo.nn import ACTIVATIONS, ConvBlock, ConvSpec, append_condition, plane_sizes

from vaezoo_audio.config import ModelConfig


def spec_of(cfg: ModelConfig) -> ConvSpec:
    return ConvSpec(cfg.kernel_size, cfg.norm, cfg.groups, cfg.activation)


class MelEncoder(nn.Module):
    """``condition_dim``: the size of a conditional recipe's embedded class, appended to the features."""

    def __init__(self, n_mels: int, frames: int, latent_dim: int, cfg: ModelConfig, condition_dim: int = 0):
        super().__init__()
        spec = spec_of(cfg)
        widths = [1] + list(cfg.channels)
        self.stages = nn.Sequential(*[ConvBlock(a, b, spec, "down") for a, b in zip(widths[:-1], widths[1:])])
        mel, time = plane_sizes((n_mels, frames), len(cfg.channels), cfg.kernel_size)[-1]
        self.to_latent = nn.Linear(widths[-1] * mel * time + condition_dim, 2 * latent_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.to_latent(append_condition(self.stages(batch["x"]).flatten(1), batch)).chunk(2, dim=-1)
        return mean, logvar


class MelDecoder(nn.Module):
    """The encoder mirrored: a linear map to the smallest feature plane, then upsampling blocks.
    ``input_dim`` is what it receives: z, and a conditional recipe's class embedding."""

    def __init__(self, n_mels: int, frames: int, input_dim: int, cfg: ModelConfig):
        super().__init__()
        spec = spec_of(cfg)
        sizes = plane_sizes((n_mels, frames), len(cfg.channels), cfg.kernel_size)   # largest first
        widths = list(reversed(cfg.channels))           # e.g. [128, 64, 32]
        out_widths = widths[1:] + [widths[-1]]          # e.g. [64, 32, 32]: the last block keeps its width
        self.start = (widths[0], *sizes[-1])
        self.from_latent = nn.Sequential(nn.Linear(input_dim, math.prod(self.start)), ACTIVATIONS[cfg.activation]())
        self.stages = nn.Sequential(*[
            ConvBlock(a, b, spec, "up", out_size=s) for a, b, s in zip(widths, out_widths, reversed(sizes[:-1]))
        ])
        # A plain convolution: its outputs are the likelihood's locations, so no norm or activation.
        self.to_mel = nn.Conv2d(out_widths[-1], 1, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.kind = cfg.likelihood
        self.log_scale: nn.Parameter | None = None
        self.fixed_log_scale = 0.0
        if cfg.scale == "learned":
            # Normalised log-mel has unit variance; start the scale at half of it, one per mel band.
            self.log_scale = nn.Parameter(torch.full((n_mels, 1), math.log(0.5)))
        else:
            self.fixed_log_scale = math.log(float(cfg.scale))

    def forward(self, z: torch.Tensor):
        loc = self.to_mel(self.stages(self.from_latent(z).view(-1, *self.start)))
        log_scale = self.log_scale if self.log_scale is not None else self.fixed_log_scale
        return (Gaussian if self.kind == "gaussian" else Laplace)(loc, log_scale)
