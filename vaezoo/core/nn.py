"""Network blocks that any modality may build on (public plugin API: ``vaezoo.nn``).

- ``ConvBlock``: 2-D convolution -> normalisation -> activation, optionally halving
  (``"down"``, stride 2) or doubling (``"up"``) both sides. Downsampling an odd side rounds
  up (``halved(7, 3) == 4``), so an upsampling block is told the exact side it restores and
  picks the transposed convolution's ``output_padding`` per axis (or resizes to it, for
  nearest-neighbour upsampling). Encoders and decoders built from ``plane_sizes`` therefore
  mirror each other for any height and width.
- ``ResidualBlock``: x + two ConvBlocks of x, at constant width and size.
- ``mlp``: fully connected layers with an activation between them.

The image and audio plugins build their conv networks from these blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}
Resample = Literal["none", "down", "up"]
Size = tuple[int, int]

__all__ = ["ACTIVATIONS", "Resample", "Size", "ConvSpec", "halved", "plane_sizes", "ConvBlock", "ResidualBlock", "mlp"]


@dataclass(frozen=True)
class ConvSpec:
    """The per-layer choices shared by every block of a network."""

    kernel_size: int = 3
    norm: Literal["none", "batch", "group"] = "none"
    groups: int = 8                  # for norm = "group"
    activation: str = "relu"         # a key of ACTIVATIONS
    upsampling: Literal["transposed", "nearest"] = "transposed"


def halved(side: int, kernel_size: int) -> int:
    """Output side of a stride-2 convolution with 'same' padding (kernel_size // 2)."""
    return (side + 2 * (kernel_size // 2) - kernel_size) // 2 + 1


def _pair(size: int | Size) -> Size:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def plane_sizes(size: int | Size, stages: int, kernel_size: int) -> list[Size]:
    """``(height, width)`` before the first of ``stages`` stride-2 stages and after each one."""
    sizes = [_pair(size)]
    for _ in range(stages):
        sizes.append(tuple(halved(s, kernel_size) for s in sizes[-1]))
    return sizes


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, spec: ConvSpec, resample: Resample = "none",
                 out_size: int | Size | None = None):
        k, pad = spec.kernel_size, spec.kernel_size // 2
        bias = spec.norm == "none"  # a norm layer's shift makes a conv bias redundant
        layers: list[nn.Module]
        if resample == "down":
            layers = [nn.Conv2d(cin, cout, k, stride=2, padding=pad, bias=bias)]
        elif resample == "up":
            if out_size is None:
                raise ValueError("an upsampling block needs the side it restores (out_size)")
            target = _pair(out_size)
            if spec.upsampling == "nearest":
                layers = [nn.Upsample(size=target, mode="nearest"), nn.Conv2d(cin, cout, k, padding=pad, bias=bias)]
            else:
                # 0 or 1 per axis: which of the two sides that halve to the same size this one was.
                extra = tuple(s - ((halved(s, k) - 1) * 2 - 2 * pad + k) for s in target)
                layers = [nn.ConvTranspose2d(cin, cout, k, stride=2, padding=pad, output_padding=extra, bias=bias)]
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


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers through ``sizes``, an activation after each but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
