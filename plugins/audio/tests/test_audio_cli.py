"""End to end through the `vaezoo` command line: train -> sample -> reconstruct -> interpolate -> eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from vaezoo.train.checkpoints import latest_weights
from vaezoo.cli import main
from vaezoo.plugin.registry import get_modality
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.runs import load_recipe_of_run
from vaezoo.train.trainer import Trainer
from vaezoo_audio import AudioModality

from audio_helpers import CLIP_FRAMES, HOP, RATE, recipe_text, sound_folder, one_thread  # noqa: F401

CLIP_SAMPLES = (CLIP_FRAMES - 1) * HOP


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    folder = sound_folder(root / "sounds", 12)
    recipe = root / "tiny.toml"
    recipe.write_text(recipe_text(folder))
    result = cli("train", recipe, "--run-dir", root / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return root / "run", folder, result.output


def test_the_plugin_is_registered():
    assert get_modality("audio") is AudioModality


def test_train_writes_statistics_samples_and_spectral_metrics(run):
    run_dir, _, output = run
    for name in ["audio_stats.json", "best.safetensors", "eval.json", "samples/prior.png", "samples/prior-00.wav",
                 "samples/reconstructions.png", "samples/reconstructions-00-input.wav",
                 "samples/reconstructions-00-reconstruction.wav"]:
        assert (run_dir / name).is_file(), name
    assert "lsd_db" in output and "mel_l1_db" in output and "IW-NLL (k=3)" in output
    extra = json.loads((run_dir / "eval.json").read_text())["extra"]
    assert 0 < extra["lsd_db"] < 100 and 0 < extra["mel_l1_db"] <= extra["lsd_db"]


def test_sample_writes_wav_of_the_recipe_rate_and_length_that_is_not_silent(run, tmp_path):
    run_dir, _, _ = run
    result = cli("sample", run_dir, "--n", 4, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    for i in range(4):
        audio, rate = sf.read(str(tmp_path / f"samples-t1-seed0-{i:02d}.wav"), dtype="float32")
        assert rate == RATE and audio.shape == (CLIP_SAMPLES,)
        assert float(np.sqrt(np.mean(audio**2))) > 1e-3          # not silent
    assert (tmp_path / "samples-t1-seed0.png").is_file()


def test_reconstruct_and_interpolate_files_from_the_command_line(run, tmp_path):
    run_dir, folder, _ = run
    a, b = folder / "sound-00.wav", folder / "sound-03.wav"
    result = cli("reconstruct", run_dir, a, b, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "reconstructions-01-reconstruction.wav")).frames == CLIP_SAMPLES
    result = cli("interpolate", run_dir, a, b, "--steps", 3, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "interpolation-linear-00.wav")).frames == 3 * CLIP_SAMPLES + 2 * round(0.15 * RATE)
    result = cli("reconstruct", run_dir, folder / "missing.wav")
    assert result.exit_code == 2 and "missing.wav: audio file not found" in result.output


def test_eval_reports_spectral_distances(run, tmp_path):
    run_dir, _, _ = run
    result = cli("eval", run_dir, "--k", 2, "--max-examples", 3, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert "lsd_db" in result.output and json.loads((tmp_path / "e.json").read_text())["n_examples"] == 3


def test_resume_replays_the_random_crops_exactly(run, tmp_path):
    """Crops come from the global RNG, which checkpoints store: 1 + 1 epochs equal 2 epochs."""
    _, folder, _ = run
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text(recipe_text(folder, train={"samples": 0}, eval={"at_end": False}))
    Trainer(load_recipe(recipe_path), tmp_path / "straight", progress_bar=False, echo=lambda m: None).fit()
    Trainer(load_recipe(recipe_path, ["train.epochs=1"]), tmp_path / "split", progress_bar=False, echo=lambda m: None).fit()
    resumed = load_recipe_of_run(tmp_path / "split", ["train.epochs=2"])
    Trainer(resumed, tmp_path / "split", resume=True, progress_bar=False, echo=lambda m: None).fit()
    a, b = load_file(str(latest_weights(tmp_path / "straight"))), load_file(str(latest_weights(tmp_path / "split")))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_traverse_writes_a_wav_per_dimension(run, tmp_path):
    run_dir, _, _ = run
    result = cli("traverse", run_dir, "--dims", "0,1", "--steps", 3, "--from", "test:0", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "traversal-test-0.png").is_file()
    for row in range(2):
        assert sf.info(str(tmp_path / f"traversal-test-0-{row:02d}.wav")).frames == 3 * CLIP_SAMPLES + 2 * round(0.15 * RATE)


@pytest.mark.parametrize("variant", [["posterior.kind=iaf"], ["prior.kind=vamp", "prior.components=3"]])
def test_an_iaf_posterior_or_a_vampprior_trains_on_audio(run, tmp_path, variant):
    """Pseudo-clips for the VampPrior come from the plugin's pseudo_inputs; the IAF needs nothing."""
    _, folder, _ = run
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(folder))
    sets = [arg for item in variant for arg in ("--set", item)]
    result = cli("train", recipe, "--run-dir", tmp_path / "run", *sets, "--set", "train.epochs=1", "--no-progress")
    assert result.exit_code == 0, result.output
    weights = load_file(str(latest_weights(tmp_path / "run")))
    prefix = "flow." if "iaf" in variant[0] else "prior.pseudo_inputs."
    assert any(k.startswith(prefix) for k in weights)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["iw_nll"] is not None
    result = cli("sample", tmp_path / "run", "--n", 2, "--out", tmp_path / "s")
    assert result.exit_code == 0 and list((tmp_path / "s").glob("*.wav"))


def test_a_vaegan_with_a_multiscale_discriminator_trains_on_audio(run, tmp_path):
    """The mel plane is image-like: the generic multi-scale discriminator reads it, its
    numbers are logged, and the run still writes WAVs and an honest ELBO."""
    _, folder, _ = run
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(folder))
    sets = ["adversarial.enabled=true", 'adversarial.discriminator="multiscale"', "adversarial.scales=2",
            "adversarial.channels=4", "adversarial.freeze_encoder=true", "train.epochs=2"]
    result = cli("train", recipe, "--run-dir", tmp_path / "run", *[a for s in sets for a in ("--set", s)], "--no-progress")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (start,) = [r for r in records if r.get("event") == "adversarial_start"]
    assert start["discriminator"] == "MultiScaleDiscriminator" and start["step"] == 0
    assert all("disc_loss" in r and "feature_matching" in r for r in records if r["split"] == "train")
    figures = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert figures["iw_nll"] is not None and figures["elbo"] < 0
    assert (tmp_path / "run" / "samples" / "prior-00.wav").is_file()
