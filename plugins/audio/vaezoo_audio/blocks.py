"""Conv building blocks over the (mel, time) plane, shared by the encoder and the decoder.

``ConvBlock`` is convolution -> normalisation -> activation, optionally halving
(``"down"``, stride 2) or doubling (``"up"``, transposed stride 2) both axes. Downsampling
an odd side rounds up (``halved(5) == 3``), so an upsampling block is told the exact side it
must restore and picks the transposed convolution's ``output_padding`` per axis.
``plane_sizes`` lists the sides every stage of an encoder produces; the decoder walks the
same list backwards, so the two mirror each other exactly for any n_mels and T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}
Resample = Literal["none", "down", "up"]
Size = tuple[int, int]


@dataclass(frozen=True)
class ConvSpec:
    """The per-layer choices shared by every block of both networks."""

    kernel_size: int = 3
    norm: str = "none"
    groups: int = 8
    activation: str = "silu"


def halved(side: int, kernel_size: int) -> int:
    """Output side of a stride-2 convolution with 'same' padding (kernel_size // 2)."""
    return (side + 2 * (kernel_size // 2) - kernel_size) // 2 + 1


def plane_sizes(size: Size, stages: int, kernel_size: int) -> list[Size]:
    """``(mel, time)`` sides before the first stage and after each of ``stages`` stride-2 stages."""
    sizes = [tuple(size)]
    for _ in range(stages):
        sizes.append(tuple(halved(s, kernel_size) for s in sizes[-1]))
    return sizes


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, spec: ConvSpec, resample: Resample = "none", out_size: Size | None = None):
        k, pad = spec.kernel_size, spec.kernel_size // 2
        bias = spec.norm == "none"  # a norm layer's shift makes a conv bias redundant
        if resample == "down":
            conv = nn.Conv2d(cin, cout, k, stride=2, padding=pad, bias=bias)
        elif resample == "up":
            if out_size is None:
                raise ValueError("an upsampling block needs the side it restores (out_size)")
            # The side the matching downsampling produced, and which of its two possible inputs this is.
            extra = tuple(s - ((halved(s, k) - 1) * 2 - 2 * pad + k) for s in out_size)
            conv = nn.ConvTranspose2d(cin, cout, k, stride=2, padding=pad, output_padding=extra, bias=bias)
        else:
            conv = nn.Conv2d(cin, cout, k, padding=pad, bias=bias)
        layers: list[nn.Module] = [conv]
        if spec.norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        elif spec.norm == "group":
            layers.append(nn.GroupNorm(spec.groups, cout))
        layers.append(ACTIVATIONS[spec.activation]())
        super().__init__(*layers)
