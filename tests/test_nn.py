"""vaezoo.nn: conv blocks that halve and restore any side exactly, residual blocks, MLPs."""

import pytest
import torch
from torch import nn

from vaezoo.nn import ConvBlock, ConvSpec, ResidualBlock, halved, mlp, plane_sizes


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_halved_matches_a_real_stride_2_convolution(kernel):
    for side in range(1, 30):
        conv = nn.Conv2d(1, 1, kernel, stride=2, padding=kernel // 2)
        assert conv(torch.zeros(1, 1, side, side + 1)).shape[-2:] == (halved(side, kernel), halved(side + 1, kernel))


def test_plane_sizes_round_odd_sides_up():
    assert plane_sizes((20, 13), 3, 3) == [(20, 13), (10, 7), (5, 4), (3, 2)]
    assert plane_sizes(28, 2, 3) == [(28, 28), (14, 14), (7, 7)]


@pytest.mark.parametrize("upsampling", ["transposed", "nearest"])
@pytest.mark.parametrize("size", [(28, 28), (20, 13), (7, 5)])
def test_down_then_up_restores_every_side(upsampling, size):
    spec = ConvSpec(kernel_size=3, norm="group", groups=2, activation="silu", upsampling=upsampling)
    sizes = plane_sizes(size, 2, spec.kernel_size)
    down = nn.Sequential(ConvBlock(1, 4, spec, "down"), ConvBlock(4, 4, spec, "down"))
    up = nn.Sequential(ConvBlock(4, 4, spec, "up", out_size=sizes[1]), ConvBlock(4, 2, spec, "up", out_size=sizes[0]))
    h = down(torch.randn(3, 1, *size))
    assert h.shape == (3, 4, *sizes[2])
    assert up(h).shape == (3, 2, *size)


def test_blocks_options_and_errors():
    spec = ConvSpec(norm="batch")
    block = ConvBlock(2, 3, spec)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] and block[0].bias is None
    assert ConvBlock(2, 3, ConvSpec())[0].bias is not None          # no norm: the conv keeps its bias
    with pytest.raises(ValueError, match="out_size"):
        ConvBlock(2, 3, spec, "up")
    residual = ResidualBlock(3, ConvSpec())
    for p in residual.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(residual(x), x)                                # identity when the body outputs 0
    net = mlp([4, 8, 2], "tanh")
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear] and net(torch.zeros(5, 4)).shape == (5, 2)
