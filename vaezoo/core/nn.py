"""Network blocks that any modality may build on (public plugin API: ``vaezoo.nn``).

- ``ConvBlock``: 2-D convolution -> normalisation -> activation, optionally halving
  (``"down"``, stride 2) or doubling (``"up"``) both sides. Downsampling an odd side rounds
  up (``halved(7, 3) == 4``), so an upsampling block is told the exact side it restores and
  picks the transposed convolution's ``output_padding`` per axis (or resizes to it, for
  nearest-neighbour upsampling). Encoders and decoders built from ``plane_sizes`` therefore
  mirror each other for any height and width.
- ``ResidualBlock``: x + two ConvBlocks of x, at constant width and size.
- ``ConvBlock1d``, ``ResidualBlock1d`` and ``stage_lengths``: the same for sequences
  ``[N, C, L]`` (waveforms, feature frames, embedded tokens): a ``"down"`` block halves L
  (odd lengths round up), an ``"up"`` block restores the exact ``out_length`` it is given,
  and encoders and decoders built from ``stage_lengths(L, stages, kernel_size)`` mirror each
  other for any L.
- ``mlp``: fully connected layers with an activation between them.
- ``PatchDiscriminator``, ``MultiScaleDiscriminator``, ``build_discriminator``: the generic
  discriminators of the adversarial stage (``vaezoo.core.discriminators``).
- ``append_condition``: an encoder's features with the embedded class of a conditional
  recipe appended (``vaezoo.core.conditions``).

The image and audio plugins build their conv networks from these blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import torch
from torch import nn

from vaezoo.core.conditions import append_condition
from vaezoo.core.discriminators import MultiScaleDiscriminator, PatchDiscriminator, build_discriminator

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}
Resample = Literal["none", "down", "up"]
Size = tuple[int, int]

__all__ = ["ACTIVATIONS", "Resample", "Size", "ConvSpec", "halved", "plane_sizes", "ConvBlock", "ResidualBlock",
           "stage_lengths", "ConvBlock1d", "ResidualBlock1d", "mlp", "PseudoInputs", "PatchDiscriminator",
           "MultiScaleDiscriminator", "build_discriminator", "append_condition"]


@dataclass(frozen=True)
class ConvSpec:
    """The per-layer choices shared by every block of a network (1-D and 2-D alike).

    ``kernel_size`` must be odd: 'same' padding (``kernel_size // 2``) keeps the size of a
    stride-1 convolution only then, and the blocks promise exact sizes."""

    kernel_size: int = 3
    norm: Literal["none", "batch", "group"] = "none"
    groups: int = 8                  # for norm = "group"
    activation: str = "relu"         # a key of ACTIVATIONS
    upsampling: Literal["transposed", "nearest"] = "transposed"

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (1, 3, 5, ...) so that sizes stay exact, got {self.kernel_size}")


def halved(side: int, kernel_size: int) -> int:
    """Output side (or length) of a stride-2 convolution with 'same' padding (kernel_size // 2)."""
    return (side + 2 * (kernel_size // 2) - kernel_size) // 2 + 1


def _pair(size: int | Size) -> Size:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def plane_sizes(size: int | Size, stages: int, kernel_size: int) -> list[Size]:
    """``(height, width)`` before the first of ``stages`` stride-2 stages and after each one."""
    sizes = [_pair(size)]
    for _ in range(stages):
        height, width = sizes[-1]
        sizes.append((halved(height, kernel_size), halved(width, kernel_size)))
    return sizes


def stage_lengths(length: int, stages: int, kernel_size: int) -> list[int]:
    """Sequence lengths before the first of ``stages`` stride-2 stages and after each one
    (``stage_lengths(100, 3, 3) == [100, 50, 25, 13]``): the encoder halves through them, the
    decoder restores them in reverse (``ConvBlock1d(..., "up", out_length=lengths[i])``)."""
    lengths = [int(length)]
    for _ in range(stages):
        lengths.append(halved(lengths[-1], kernel_size))
    return lengths


# Layer classes by the number of spatial axes; their size arguments are ints or per-axis tuples.
_CONV: dict[int, Callable[..., nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}
_TRANSPOSED: dict[int, Callable[..., nn.Module]] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
_BATCH_NORM: dict[int, Callable[[int], nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


def _conv_layers(dims: int, cin: int, cout: int, spec: ConvSpec, resample: Resample,
                 target: tuple[int, ...] | None) -> list[nn.Module]:
    """Convolution (resampling as asked) -> normalisation -> activation over ``dims`` axes;
    ``target`` is the exact output size of an ``"up"`` block."""
    k, pad = spec.kernel_size, spec.kernel_size // 2
    bias = spec.norm == "none"  # a norm layer's shift makes a conv bias redundant
    conv = _CONV[dims]
    layers: list[nn.Module]
    if resample == "down":
        layers = [conv(cin, cout, k, stride=2, padding=pad, bias=bias)]
    elif resample == "up":
        assert target is not None
        if spec.upsampling == "nearest":
            layers = [nn.Upsample(size=target, mode="nearest"), conv(cin, cout, k, padding=pad, bias=bias)]
        else:
            # 0 or 1 per axis: which of the two sides that halve to the same size this one was.
            extra = tuple(s - ((halved(s, k) - 1) * 2 - 2 * pad + k) for s in target)
            layers = [_TRANSPOSED[dims](cin, cout, k, stride=2, padding=pad, output_padding=extra, bias=bias)]
    else:
        layers = [conv(cin, cout, k, padding=pad, bias=bias)]
    if spec.norm == "batch":
        layers.append(_BATCH_NORM[dims](cout))
    elif spec.norm == "group":
        layers.append(nn.GroupNorm(spec.groups, cout))
    layers.append(ACTIVATIONS[spec.activation]())
    return layers


class ConvBlock(nn.Sequential):
    """2-D convolution -> normalisation -> activation on ``[N, C, H, W]``; ``"down"`` halves both
    sides (odd sides round up), ``"up"`` restores ``out_size`` exactly (``(H, W)`` or one side)."""

    def __init__(self, cin: int, cout: int, spec: ConvSpec, resample: Resample = "none",
                 out_size: int | Size | None = None):
        if resample == "up" and out_size is None:
            raise ValueError("an upsampling block needs the side it restores (out_size)")
        super().__init__(*_conv_layers(2, cin, cout, spec, resample, None if out_size is None else _pair(out_size)))


class ConvBlock1d(nn.Sequential):
    """1-D convolution -> normalisation -> activation on ``[N, C, L]``; ``"down"`` halves L
    (stride 2, odd lengths round up: ``halved(L, kernel_size)``), ``"up"`` restores
    ``out_length`` exactly (a transposed convolution whose ``output_padding`` is chosen for
    that length, or nearest-neighbour resizing to it and a convolution)."""

    def __init__(self, cin: int, cout: int, spec: ConvSpec, resample: Resample = "none",
                 out_length: int | None = None):
        if resample == "up" and out_length is None:
            raise ValueError("an upsampling block needs the length it restores (out_length)")
        super().__init__(*_conv_layers(1, cin, cout, spec, resample, None if out_length is None else (int(out_length),)))


class ResidualBlock(nn.Module):
    """x + two ConvBlocks of x, at constant width and size."""

    _block: ClassVar[type[ConvBlock] | type[ConvBlock1d]] = ConvBlock

    def __init__(self, channels: int, spec: ConvSpec):
        super().__init__()
        self.body = nn.Sequential(self._block(channels, channels, spec), self._block(channels, channels, spec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualBlock1d(ResidualBlock):
    """x + two ConvBlock1ds of x, at constant width and length."""

    _block = ConvBlock1d


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers through ``sizes``, an activation after each but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class PseudoInputs(nn.Module):
    """``k`` trainable inputs of one example's ``shape``, for the VampPrior (a modality's
    ``pseudo_inputs(k)`` returns one): ``forward()`` gives ``{"x": [k, *shape], **constants}``.

    ``squash = "sigmoid"`` keeps x in (0, 1), the range of image intensities; ``"none"``
    leaves it free (standardised features). ``constants`` are fixed batch entries the
    encoder also reads (e.g. a length per example), kept as buffers so they follow ``.to()``.
    """

    def __init__(self, k: int, shape: tuple[int, ...], *, squash: Literal["sigmoid", "none"] = "none",
                 constants: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.values = nn.Parameter(torch.randn(k, *shape))
        self.squash = squash
        self._constants = list((constants or {}).keys())
        for name, value in (constants or {}).items():
            self.register_buffer(f"constant_{name}", value)

    def forward(self) -> dict[str, torch.Tensor]:
        x = torch.sigmoid(self.values) if self.squash == "sigmoid" else self.values
        return {"x": x, **{name: getattr(self, f"constant_{name}") for name in self._constants}}
