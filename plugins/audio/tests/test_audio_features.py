"""The log-mel front end, its normalisation, and the way back to sound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from vaezoo import VaezooError
from vaezoo_audio import FeaturesConfig, FrontEnd, InversionConfig, Inverter, Normalizer, mel_errors
from vaezoo_audio.features import DB_PER_NEPER, griffin_lim

from audio_helpers import RATE, sine_sweep, one_thread  # noqa: F401  (one_thread: an autouse fixture)

FEATURES = FeaturesConfig(sample_rate=RATE, n_fft=256, hop_length=64, n_mels=32)


def test_log_mel_shape_and_resampling():
    front = FrontEnd(FEATURES)
    wave = torch.from_numpy(sine_sweep(1.0))
    log_mel = front.log_mel(wave)
    assert log_mel.shape == (32, RATE // 64 + 1) == (32, front.frames(RATE))
    # The same sweep at 44.1 kHz lands on the same frames after resampling.
    high = torch.from_numpy(sine_sweep(1.0, rate=44100))
    resampled = front.resample(high, 44100)
    assert resampled.shape[-1] == front.resampled_length(44100, 44100) == RATE
    assert front(high, 44100).shape == log_mel.shape
    # A waveform shorter than half a window still gives one frame; silence sits at the floor.
    assert front.log_mel(torch.zeros(10)).shape == (32, front.frames(10)) == (32, 3)
    assert float(front.log_mel(torch.zeros(10)).max()) == pytest.approx(math.log(FEATURES.log_floor))


def test_sweep_energy_moves_up_the_mel_bands():
    log_mel = FrontEnd(FEATURES).log_mel(torch.from_numpy(sine_sweep(1.0, f0=100, f1=3500)))
    loudest_band = log_mel.argmax(0)[2:-2]          # per frame, away from the edge frames
    assert loudest_band[0] < 6 and loudest_band[-1] > 25
    assert (loudest_band.diff() >= -1).all()        # rising, up to the odd neighbouring band


def test_trim_cuts_leading_and_trailing_silence():
    front = FrontEnd(FEATURES)
    wave = np.concatenate([np.zeros(RATE // 2, np.float32), sine_sweep(0.5), np.zeros(RATE // 4, np.float32)])
    full = front.log_mel(torch.from_numpy(wave))
    trimmed = front.trim(full, 40.0)
    # 0.5 s of sound is about 62 frames; a window or so of leakage on each side is allowed.
    assert 60 <= trimmed.shape[-1] <= 70 < full.shape[-1]


def test_inverse_round_trip_on_a_sine_sweep():
    """log-mel -> InverseMelScale (gelsd) + NNLS steps -> Griffin-Lim -> log-mel again stays close.

    Bound, measured here (32 Griffin-Lim iterations, momentum 0.99, 20 NNLS steps): the
    log-spectral distance between the sweep's log-mel and its reconstruction's is 3.96-4.04 dB
    over seeds 0-4 (random initial phases). Griffin-Lim alone, given the sweep's true linear
    spectrum, leaves 1.2 dB; recovering a linear spectrum from 32 mel bands costs the rest
    (a sweep is the hard case: most bands are near silence at any moment, and LSD weighs their
    errors like those of the loud band). Mistakes land far above: InverseMelScale without the
    NNLS steps 23.7 dB, inverting magnitudes as powers 17.9 dB, the wrong mel scale 12.6 dB.
    So 5 dB passes every seed with a 1 dB margin and fails each of those mistakes.
    """
    front = FrontEnd(FEATURES)
    inverter = Inverter(FEATURES, InversionConfig(iterations=32, momentum=0.99, nnls_iterations=20))
    wave = torch.from_numpy(sine_sweep(1.0, f0=150, f1=3000))
    log_mel = front.log_mel(wave)
    torch.manual_seed(0)
    out = inverter(log_mel)
    assert out.shape == (front.samples(log_mel.shape[-1]),) and torch.isfinite(out).all()
    again = front.log_mel(out)
    assert again.shape == log_mel.shape
    _, lsd, frames = mel_errors(log_mel[None], again[None])
    assert lsd / frames < 5.0
    # The waveform's loudness survives too (measured within 0.02 dB of the sweep's RMS).
    ratio_db = 20 * math.log10(float(out.pow(2).mean().sqrt() / wave[: len(out)].pow(2).mean().sqrt()))
    assert abs(ratio_db) < 1.0


@pytest.mark.parametrize("momentum, threads", [(0.99, 1), (0.0, 1), (0.99, 2)])
def test_griffin_lim_matches_torchaudio(momentum, threads):
    """Same algorithm and same random initial phases as torchaudio.functional.griffinlim,
    whether the batch runs on one thread or is split over a thread pool."""
    inverter = Inverter(FEATURES, InversionConfig(iterations=12, momentum=momentum, random_phase=True))
    power = torch.rand(3, 2, 129, 20, generator=torch.Generator().manual_seed(0)) ** 4
    torch.manual_seed(5)
    expected = torchaudio.functional.griffinlim(power, torch.hann_window(256), 256, 64, 256, 2.0, 12, momentum, 19 * 64, True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = inverter.griffin_lim(power, torch.Generator().manual_seed(5))   # the same draws
    finally:
        torch.set_num_threads(before)
    assert got.shape == expected.shape == (3, 2, 19 * 64)
    assert torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("n_fft, hop, win, frames", [(256, 100, 200, 30), (128, 32, 96, 9), (64, 48, 64, 12)])
def test_griffin_lim_matches_torchaudio_for_any_hop_and_window(n_fft, hop, win, frames):
    """The overlap-add and the window's padding hold when the hop does not divide the FFT
    size, the window is shorter than it, or frames barely overlap; the scripted function
    (the exported waveform head's) gives the same numbers."""
    power = torch.rand(2, n_fft // 2 + 1, frames, generator=torch.Generator().manual_seed(1)) ** 4
    angles = torch.rand(power.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    length = (frames - 1) * hop
    with torch.random.fork_rng():
        torch.manual_seed(3)
        torch.rand(power.shape, dtype=torch.complex64)  # torchaudio draws its phases from the global RNG:
        torch.manual_seed(3)                            # give it the same ones
        expected = torchaudio.functional.griffinlim(power, torch.hann_window(win), n_fft, hop, win, 2.0, 8, 0.99,
                                                    length, True)
        torch.manual_seed(3)
        angles = torch.rand(power.shape, dtype=torch.complex64)
    kwargs = dict(window=torch.hann_window(win), n_fft=n_fft, hop_length=hop, win_length=win, n_iter=8, momentum=0.99,
                  length=length)
    got = griffin_lim(power.sqrt(), angles, **kwargs)
    assert got.shape == expected.shape == (2, length)
    assert torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()))
    scripted = torch.jit.script(griffin_lim)
    assert torch.allclose(scripted(power.sqrt(), angles, **kwargs), got, atol=1e-6)
    with pytest.raises(ValueError, match="must exceed half the FFT size"):
        griffin_lim(power.sqrt()[..., :1], angles[..., :1], **{**kwargs, "length": 0})



@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@pytest.mark.parametrize("n_fft, n_mels", [(1024, 80), (256, 64)])
def test_linear_power_is_inverse_mel_scale(n_fft, n_mels):
    """The pseudo-inverse computed once gives InverseMelScale's least-squares solution (gelsd),
    also for a filter bank with empty filters (256 / 64: rank-deficient)."""
    features = FeaturesConfig(n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels)
    inverter = Inverter(features, InversionConfig(nnls_iterations=0))
    expected_fn = torchaudio.transforms.InverseMelScale(
        n_stft=n_fft // 2 + 1, n_mels=n_mels, sample_rate=features.sample_rate, f_min=features.f_min,
        f_max=features.top_frequency, norm=None, mel_scale=features.mel_scale, driver="gelsd")
    log_mel = torch.randn(3, n_mels, 25, generator=torch.Generator().manual_seed(0)) * 2
    expected = expected_fn(log_mel.exp())
    assert torch.allclose(inverter.linear_power(log_mel), expected, atol=1e-5 * float(expected.abs().max()))

@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@pytest.mark.parametrize("n_fft, n_mels, f_max, groups", [(1024, 64, 8000.0, 4), (256, 64, None, 4), (512, 80, 4000.0, 3),
                                                          (256, 8, None, 1), (256, 8, None, 50)])
def test_banded_product_equals_the_dense_one(n_fft, n_mels, f_max, groups):
    """The NNLS steps' ``s F F^T`` block by block equals the dense product, also for banks with
    empty filters (256 / 64), a band limit below Nyquist, one group and more groups than bands."""
    from vaezoo_audio.features import BandedProduct

    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, f_min=0.0, f_max=f_max or 8000.0, n_mels=n_mels,
                                               sample_rate=16000, norm=None)
    banded = BandedProduct(fb, groups)
    assert len(banded.spans) == min(groups, n_mels)
    s = torch.rand(37, n_fft // 2 + 1, generator=torch.Generator().manual_seed(1))
    dense = s @ fb @ fb.T
    assert torch.allclose(banded(s), dense, rtol=1e-5, atol=1e-6 * float(dense.abs().max()))
    if groups > 1 and n_mels >= 64:   # real banks: the blocks hold far fewer entries than F
        assert banded.flat.numel() < 0.6 * fb.numel()


def test_nnls_steps_equal_the_dense_update():
    """``linear_power`` with NNLS steps is ``s <- s * (F m) / (F F^T s)`` from the clipped
    least-squares start, as written densely over ``[..., freq, T]``."""
    features = FeaturesConfig(n_fft=512, hop_length=128, n_mels=40)
    inverter = Inverter(features, InversionConfig(nnls_iterations=7))
    fb = torchaudio.functional.melscale_fbanks(257, f_min=features.f_min, f_max=features.top_frequency, n_mels=40,
                                               sample_rate=features.sample_rate, norm=None)
    log_mel = torch.randn(2, 3, 40, 11, generator=torch.Generator().manual_seed(2))
    mel = log_mel.exp()
    linear = torch.relu(torch.linalg.pinv(fb.double().T).float() @ mel)
    linear = linear + 1e-3 * linear.amax(dim=-2, keepdim=True) + 1e-12
    for _ in range(7):
        linear = linear * (fb @ mel) / (fb @ (fb.T @ linear)).clamp_min(1e-20)
    got = inverter.linear_power(log_mel)
    assert got.shape == (2, 3, 257, 11)
    assert torch.allclose(got, linear, rtol=1e-3, atol=1e-5 * float(linear.abs().max()))


def test_normalizer_fits_saves_and_loads(tmp_path):
    rng = torch.Generator().manual_seed(0)
    chunks = [torch.randn(32, n, generator=rng) * 2 + torch.arange(32).unsqueeze(1) for n in (5, 17, 40)]
    norm = Normalizer.fit(chunks, 32, "mel")
    joined = torch.cat(chunks, -1)
    assert torch.allclose(norm.mean, joined.mean(-1), atol=1e-4)
    assert torch.allclose(norm.std, joined.std(-1, unbiased=False), atol=1e-4)
    x = norm.normalize(joined)
    assert torch.allclose(x.mean(-1), torch.zeros(32), atol=1e-4) and torch.allclose(norm.denormalize(x), joined, atol=1e-4)
    norm.save(tmp_path, FEATURES)
    back = Normalizer.load(tmp_path, FEATURES)
    assert torch.equal(back.mean, norm.mean) and back.frames == 62 and back.files == 3
    assert Normalizer.fit(chunks, 32, "global").std.unique().numel() == 1
    with pytest.raises(VaezooError, match="mel bands"):
        Normalizer.load(tmp_path, FeaturesConfig(sample_rate=RATE, n_fft=256, hop_length=64, n_mels=40))
    with pytest.raises(VaezooError, match="audio_stats.json is missing"):
        Normalizer.load(tmp_path / "nowhere", FEATURES)


def test_mel_errors_skip_padding():
    a = torch.zeros(2, 1, 4, 6)
    b = a.clone()
    b[..., :3] += 1.0 / DB_PER_NEPER       # 1 dB on the first three frames
    b[..., 3:] += 100.0                     # padding: must not count
    l1, lsd, frames = mel_errors(a, b, torch.tensor([3, 3]))
    assert frames == 6 and l1 / frames == pytest.approx(1.0) and lsd / frames == pytest.approx(1.0)
