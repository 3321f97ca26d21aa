"""Discriminators for an adversarial stage, for image-like tensors ``[N, C, H, W]`` or ``[N, H, W]``.

The contract every discriminator follows (the generic ones here, and a plugin's own from
``Modality.build_discriminator``): ``discriminator(x) -> list[list[Tensor]]``, one list per
scale, holding that scale's intermediate feature maps and, last, its real/fake logits (any
shape; each logit is one patch's verdict). The features serve feature matching (Larsen et
al. 2016); the logits the GAN loss. This is the convention of MelGAN's and RAVE's
multi-scale discriminators.

- ``PatchDiscriminator``: a PatchGAN-style stack of stride-2 4x4 convolutions with leaky
  ReLUs (Isola et al. 2017), spectral norm on every convolution (Miyato et al. 2018), and a
  3x3 convolution to one logit per patch.
- ``MultiScaleDiscriminator``: several of those, each seeing the input with its last axis
  (the width of an image, the time of a spectrogram) averaged down 2x more than the last.
- ``build_discriminator(kind, shape, ...)``: one of them for inputs of ``shape`` (one
  example's, without N), with as many layers as the smallest side allows.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm

DiscriminatorKind = Literal["patch", "multiscale"]


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int, spectral_norm: bool) -> nn.Module:
    conv = nn.Conv2d(cin, cout, kernel, stride, padding)
    return with_spectral_norm(conv) if spectral_norm else conv


def _as_planes(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1) if x.dim() == 3 else x


class PatchDiscriminator(nn.Module):
    """``layers`` stride-2 convolutions (width ``channels``, doubled per layer up to 8x), then
    one logit per patch. Returns ``[[feature_1, ..., feature_layers, logits]]``."""

    def __init__(self, in_channels: int, *, channels: int = 32, layers: int = 3, spectral_norm: bool = True):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a patch discriminator needs at least one layer, got {layers}")
        widths = [in_channels] + [channels * min(2 ** i, 8) for i in range(layers)]
        self.blocks = nn.ModuleList(
            nn.Sequential(_conv(cin, cout, 4, 2, 1, spectral_norm), nn.LeakyReLU(0.2))
            for cin, cout in zip(widths, widths[1:]))
        self.to_logits = _conv(widths[-1], 1, 3, 1, 1, spectral_norm)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        h = _as_planes(x)
        features = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        return [features + [self.to_logits(h)]]


class MultiScaleDiscriminator(nn.Module):
    """One ``PatchDiscriminator`` per scale; scale s sees the input with its last axis
    averaged down by 2^s (MelGAN's scheme, on the time axis of a spectrogram)."""

    def __init__(self, in_channels: int, *, scales: int = 3, channels: int = 32, layers: Sequence[int] = (3, 3, 3),
                 spectral_norm: bool = True):
        super().__init__()
        if scales < 1 or len(layers) != scales:
            raise ValueError(f"a multi-scale discriminator needs one layer count per scale, got {list(layers)} for {scales}")
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, channels=channels, layers=n, spectral_norm=spectral_norm)
                                    for n in layers)
        self.pool = nn.AvgPool2d((1, 4), stride=(1, 2), padding=(0, 1), count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        h = _as_planes(x)
        out = []
        for i, discriminator in enumerate(self.scales):
            if i:
                h = self.pool(h)
            out += discriminator(h)
        return out


def _layers_for(height: int, width: int, wanted: int) -> int:
    """At most ``wanted`` stride-2 layers, as many as keep a plane of at least 2x2 for the
    logits (each halves a side: 28 -> 14 -> 7 -> 3 is three, 8 -> 4 -> 2 two); at least one."""
    fits = int(math.log2(max(min(height, width), 1))) - 1
    return max(1, min(wanted, fits))


def build_discriminator(kind: DiscriminatorKind, shape: Sequence[int], *, channels: int = 32, layers: int = 3,
                        scales: int = 3, spectral_norm: bool = True) -> nn.Module:
    """A generic discriminator for examples of ``shape``: ``[C, H, W]`` or ``[H, W]`` (one
    channel). ``ValueError`` says why it cannot be built."""
    if len(shape) not in (2, 3):
        raise ValueError(f"the generic discriminators take image-like examples [C, H, W] or [H, W], not {list(shape)}")
    in_channels, height, width = (1, *shape) if len(shape) == 2 else tuple(shape)
    if kind == "patch":
        return PatchDiscriminator(in_channels, channels=channels, layers=_layers_for(height, width, layers),
                                  spectral_norm=spectral_norm)
    if kind == "multiscale":
        widths = [width]
        for _ in range(scales - 1):
            widths.append((widths[-1] + 2 - 4) // 2 + 1)   # the pooling's output width
        if widths[-1] < 2:
            raise ValueError(f"{scales} scales halve a width of {width} below 2; use fewer scales")
        return MultiScaleDiscriminator(in_channels, scales=scales, channels=channels,
                                       layers=[_layers_for(height, w, layers) for w in widths],
                                       spectral_norm=spectral_norm)
    raise ValueError(f"unknown discriminator {kind!r}; known: patch, multiscale")


def verdicts_problem(out: Any) -> str | None:
    """Why ``out`` is not a discriminator's output (``list[list[Tensor]]``, logits last), or None."""
    ok = (isinstance(out, (list, tuple)) and len(out) > 0
          and all(isinstance(scale, (list, tuple)) and len(scale) > 0 and all(isinstance(t, torch.Tensor) for t in scale)
                  for scale in out))
    if ok:
        return None
    return (f"returned {type(out).__name__}; a discriminator returns a list with one list per scale of tensors: "
            "its feature maps, then its logits (see vaezoo.core.discriminators)")


def check_verdicts(out: Any, who: str) -> None:
    """``PluginError`` naming ``who`` when ``out`` is not a discriminator's output."""
    from vaezoo.core.errors import PluginError

    problem = verdicts_problem(out)
    if problem is not None:
        raise PluginError(f"{who} {problem}")
