"""vaezoo.nn: conv blocks that halve and restore any side or length exactly, residual blocks, MLPs."""

import pytest
import torch
from torch import nn

from vaezoo.nn import (ConvBlock, ConvBlock1d, ConvSpec, ResidualBlock, ResidualBlock1d, halved, mlp, plane_sizes,
                       stage_lengths)


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
    with pytest.raises(ValueError, match="kernel_size must be odd"):   # an even kernel would change sizes
        ConvSpec(kernel_size=4)
    residual = ResidualBlock(3, ConvSpec())
    for p in residual.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(residual(x), x)                                # identity when the body outputs 0
    net = mlp([4, 8, 2], "tanh")
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear] and net(torch.zeros(5, 4)).shape == (5, 2)


# -- 1-D blocks: sequences [N, C, L] -------------------------------------------------------------


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_stage_lengths_match_real_stride_2_convolutions(kernel):
    assert stage_lengths(100, 3, 3) == [100, 50, 25, 13]
    for length in range(1, 60):
        lengths = stage_lengths(length, 4, kernel)
        x = torch.zeros(1, 1, length)
        for expected in lengths[1:]:
            x = nn.Conv1d(1, 1, kernel, stride=2, padding=kernel // 2)(x)
            assert x.shape[-1] == expected


@pytest.mark.parametrize("upsampling", ["transposed", "nearest"])
@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_1d_encoder_and_decoder_from_stage_lengths_mirror_each_other(upsampling, kernel):
    spec = ConvSpec(kernel_size=kernel, norm="group", groups=2, activation="silu", upsampling=upsampling)
    for length in [*range(1, 34), 47, 64, 99, 100, 101, 255, 1000, 1001]:   # odd lengths too
        stages = 3
        lengths = stage_lengths(length, stages, kernel)
        widths = [1, 4, 6, 8]
        encoder = nn.Sequential(*[ConvBlock1d(widths[i], widths[i + 1], spec, "down") for i in range(stages)])
        decoder = nn.Sequential(*[ConvBlock1d(widths[i + 1], widths[i] if i else 2, spec, "up", out_length=lengths[i])
                                  for i in reversed(range(stages))])
        h = encoder(torch.randn(2, 1, length))
        assert h.shape == (2, 8, lengths[-1])
        out = h
        for block, expected in zip(decoder, reversed(lengths[:-1])):
            out = block(out)
            assert out.shape[-1] == expected                      # every stage restored exactly
        assert out.shape == (2, 2, length)


def test_1d_blocks_options_and_errors():
    block = ConvBlock1d(2, 3, ConvSpec(norm="batch", activation="elu"))
    assert [type(m) for m in block] == [nn.Conv1d, nn.BatchNorm1d, nn.ELU] and block[0].bias is None
    up = ConvBlock1d(4, 4, ConvSpec(norm="group", groups=2), "up", out_length=9)
    assert [type(m) for m in up] == [nn.ConvTranspose1d, nn.GroupNorm, nn.ReLU] and up[0].output_padding == (0,)
    assert ConvBlock1d(4, 4, ConvSpec(), "up", out_length=10)[0].output_padding == (1,)
    nearest = ConvBlock1d(4, 4, ConvSpec(upsampling="nearest"), "up", out_length=9)
    assert [type(m) for m in nearest] == [nn.Upsample, nn.Conv1d, nn.ReLU] and nearest[0].size == (9,)
    with pytest.raises(ValueError, match="out_length"):
        ConvBlock1d(2, 3, ConvSpec(), "up")
    residual = ResidualBlock1d(3, ConvSpec())
    assert all(isinstance(b, ConvBlock1d) for b in residual.body)
    for p in residual.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 3, 11)
    assert torch.equal(residual(x), x)                                # identity when the body outputs 0
    # The 2-D blocks are unchanged by the 1-D ones.
    assert all(isinstance(b, ConvBlock) for b in ResidualBlock(3, ConvSpec()).body)
