"""Encoder and decoder over the (mel, time) plane, the writers, and the spectral metrics."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from vaezoo import VAE, Gaussian, Laplace
from vaezoo_audio import AudioModality, MelDecoder, MelEncoder, ModelConfig
from vaezoo.nn import plane_sizes
from vaezoo_audio.writers import PAD, SCALE

from audio_helpers import CLIP_FRAMES, HOP, RATE, make_recipe, sound_folder, one_thread  # noqa: F401


@pytest.mark.parametrize("n_mels, frames, channels", [(32, 16, [4, 8]), (20, 13, [4, 8, 8]), (7, 5, [3])])
def test_decoder_mirrors_the_encoder_for_any_plane_size(n_mels, frames, channels):
    cfg = ModelConfig(channels=channels)
    encoder, decoder = MelEncoder(n_mels, frames, 6, cfg), MelDecoder(n_mels, frames, 6, cfg)
    x = torch.randn(3, 1, n_mels, frames)
    mean, logvar = encoder({"x": x})
    assert mean.shape == logvar.shape == (3, 6)
    px = decoder(mean)
    assert isinstance(px, Laplace) and px.mean.shape == x.shape
    assert px.log_prob(x).shape == (3,)
    assert plane_sizes((20, 13), 3, 3) == [(20, 13), (10, 7), (5, 4), (3, 2)]


def test_gaussian_likelihood_with_a_learned_scale_per_mel_band_or_a_fixed_one():
    px = MelDecoder(32, 16, 4, ModelConfig(channels=[4], likelihood="gaussian"))(torch.zeros(2, 4))
    assert isinstance(px, Gaussian) and px.log_scale.shape == (32, 1) and px.log_scale.requires_grad
    px = MelDecoder(32, 16, 4, ModelConfig(channels=[4], scale=0.3))(torch.zeros(2, 4))
    assert float(px.log_scale) == pytest.approx(np.log(0.3))


@pytest.fixture(scope="module")
def modality(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    folder = sound_folder(root / "sounds", 8)
    run = root / "run"
    run.mkdir()
    m = AudioModality(make_recipe(folder), run)
    m.fit(run)
    return m


def test_writers_save_wav_and_png(modality, tmp_path):
    torch.manual_seed(0)
    vae = VAE(modality.build_encoder(), modality.build_decoder(), 4).eval()
    _, px = vae.sample(5)
    files = modality.write_samples(px, tmp_path / "prior")
    assert [f.name for f in files] == ["prior.png"] + [f"prior-{i:02d}.wav" for i in range(5)]
    info = sf.info(str(files[1]))
    assert info.samplerate == RATE and info.frames == (CLIP_FRAMES - 1) * HOP == modality.clip_samples
    with Image.open(files[0]) as im:       # 3 x 2 grid of 32 x 16 spectrograms, doubled
        assert im.size == (3 * CLIP_FRAMES * SCALE + 4 * PAD, 2 * 32 * SCALE + 3 * PAD) and im.mode == "RGB"
    torch.manual_seed(123)   # Griffin-Lim's phases come from the recipe's seed, not the global RNG
    again = modality.write_samples(px, tmp_path / "again")
    assert again[1].read_bytes() == files[1].read_bytes()

    batch = modality.collate([modality.dataset("validation")[i] for i in range(3)])
    _, px = vae.reconstruct(batch)
    files = modality.write_reconstructions(batch, px, tmp_path / "rec")
    assert [f.name for f in files[:3]] == ["rec.png", "rec-00-input.wav", "rec-00-reconstruction.wav"]
    assert len(files) == 1 + 2 * 3

    _, px = vae.interpolate(batch, batch, steps=4)
    files = modality.write_interpolations(px, 4, tmp_path / "walk")
    gap = round(0.15 * RATE)
    assert [f.name for f in files] == ["walk.png", "walk-00.wav", "walk-01.wav", "walk-02.wav"]
    assert sf.info(str(files[1])).frames == 4 * modality.clip_samples + 3 * gap
    assert modality.inversion_seconds > 0


def test_extra_metrics_are_zero_for_a_perfect_reconstruction(modality):
    class Echo(torch.nn.Module):   # a "VAE" whose reconstruction is its input
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def reconstruct(self, batch):
            return None, Gaussian(batch["x"])

    loader = [modality.collate([modality.dataset("test")[i] for i in range(len(modality.dataset("test")))])]
    n = len(loader[0]["x"])
    metrics = modality.extra_metrics(Echo(), loader, {"n_examples": n})
    assert metrics == {"mel_l1_db": 0.0, "lsd_db": 0.0}
