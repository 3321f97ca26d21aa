"""End to end through the CLI: train on a tiny image folder, then sample, reconstruct, interpolate."""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from vaezoo.cli import main

from image_helpers import random_images, write_png

SIZE = 8
TINY = """\
modality = "image"
name = "tiny-image"

[latent]
dim = 2

[data]
path = "images"
size = {size}
binarize = "dynamic"

[model]
channels = [4, 8]

[train]
epochs = 1
batch_size = 8
samples = 4
tensorboard = false

[eval]
iw_samples = 5
"""


def write_tiny(tmp_path, extra: str = ""):
    """Two class folders of random 8x8 images and a recipe that trains on them in a second."""
    for seed, c in enumerate(("a", "b")):
        for i, array in enumerate(random_images(24, SIZE, seed=seed)):
            write_png(tmp_path / "images" / c / f"{i}.png", array)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.format(size=SIZE) + extra)
    return recipe


def test_train_then_sample(tmp_path):
    recipe = write_tiny(tmp_path)
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (run / "samples" / "prior.png").exists() and (run / "samples" / "reconstructions.png").exists()
    assert json.loads((run / "eval.json").read_text())["iw_samples"] == 5

    result = runner.invoke(main, ["sample", str(run), "--n", "16"])
    assert result.exit_code == 0, result.output
    path = run / "samples" / "samples-t1-seed0.png"
    with Image.open(path) as im:
        im.load()
        assert im.size == (4 * SIZE + 5 * 2, 4 * SIZE + 5 * 2)   # 4 x 4 grid with 2-pixel gaps

    inputs = [str(tmp_path / "images" / "a" / f"{i}.png") for i in (0, 1)]
    result = runner.invoke(main, ["interpolate", str(run), *inputs, "--steps", "5"])
    assert result.exit_code == 0, result.output
    with Image.open(run / "samples" / "interpolation-linear.png") as im:
        assert im.size == (5 * SIZE + 6 * 2, SIZE + 2 * 2)

    result = runner.invoke(main, ["reconstruct", str(run), str(tmp_path / "missing.png")])
    assert result.exit_code == 2 and "missing.png" in result.output


def test_a_folder_of_corrupt_images_fails_the_start_and_the_retry_works(tmp_path):
    """The images are read lazily, so the error comes from the first batch: the new run's
    folder must still be left as it was found, or the retry with the same --run-dir is refused."""
    for c in ("a", "b"):
        for i in range(8):
            (tmp_path / "images" / c).mkdir(parents=True, exist_ok=True)
            (tmp_path / "images" / c / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 3)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f'modality = "image"\n[data]\npath = "images"\nsize = {SIZE}\n[model]\nchannels = [4]\n'
                      "[train]\nepochs = 1\nbatch_size = 4\nsamples = 0\ntensorboard = false\n[eval]\niw_samples = 0\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"])
    assert result.exit_code == 2 and "cannot read image" in result.output and "Traceback" not in result.output
    assert not run.exists()

    for c in ("a", "b"):                                  # the data is fixed; the same command works
        for i, array in enumerate(random_images(8, SIZE, seed=1)):
            write_png(tmp_path / "images" / c / f"{i}.png", array)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_the_vampprior_learns_pseudo_images(tmp_path):
    """The image plugin gives the VampPrior its pseudo-inputs: images in (0, 1) that train."""
    for i, array in enumerate(random_images(24, SIZE, seed=0)):
        write_png(tmp_path / "images" / f"{i}.png", array)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f'modality = "image"\n[latent]\ndim = 2\n[prior]\nkind = "vamp"\ncomponents = 5\n'
                      f'[data]\npath = "images"\nsize = {SIZE}\n[model]\nchannels = [4, 8]\n'
                      "[train]\nepochs = 2\nbatch_size = 8\nsamples = 4\ntensorboard = false\n[eval]\niw_samples = 5\n")
    before = _pseudo_images(tmp_path, recipe)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    from vaezoo.train.checkpoints import latest_weights

    after = load_file(str(latest_weights(tmp_path / "run")))["prior.pseudo_inputs.values"]
    assert after.shape == (5, 1, SIZE, SIZE) and not after.equal(before)   # they trained
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "run"), "--n", "4"])
    assert result.exit_code == 0, result.output


def _pseudo_images(tmp_path, recipe):
    """The pseudo-images a fresh run starts from (the same seed, the same draws)."""
    import torch

    from vaezoo.plugin.recipes import load_recipe
    from vaezoo.train.runs import build_modality, build_vae

    torch.manual_seed(0)
    return build_vae(build_modality(load_recipe(recipe), tmp_path)).prior.pseudo_inputs.values.detach().clone()


def test_a_vaegan_trains_on_images_and_its_report_sits_beside_the_plain_vae(tmp_path):
    """The generic patch discriminator on the image plugin's planes, from the recipe alone;
    the report of the VAE-GAN run shows its prior samples beside the plain run's."""
    for i, array in enumerate(random_images(24, SIZE, seed=0)):
        write_png(tmp_path / "images" / f"{i}.png", array)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f'modality = "image"\n[latent]\ndim = 2\n[data]\npath = "images"\nsize = {SIZE}\n'
                      "[model]\nchannels = [4, 8]\n[train]\nepochs = 2\nbatch_size = 8\nsamples = 4\n"
                      "tensorboard = false\n[eval]\niw_samples = 5\n")
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "plain"), "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "gan"), "--no-progress",
                                  "--set", "adversarial.enabled=true", "--set", "adversarial.start_step=2",
                                  "--set", "adversarial.channels=4", "--set", 'adversarial.loss="least-squares"'])
    assert result.exit_code == 0, result.output
    import json

    records = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("event") == "adversarial_start"] == [2]
    assert any("disc_real" in r and "disc_fake" in r for r in records if r["split"] == "train")
    result = runner.invoke(main, ["report", str(tmp_path / "gan"), "--compare", str(tmp_path / "plain"), "--no-latent-map"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "gan" / "report.html").read_text()
    assert "Beside" in page and "../plain/samples/prior.png" in page and "samples/prior.png" in page


def test_a_conditional_image_vae_samples_each_class_and_transfers_style(tmp_path):
    """[condition] on images: a row of samples per class folder, the same latents in each."""
    recipe = write_tiny(tmp_path, "\n[condition]\nenabled = true\n")
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "samples").glob("prior*")) == ["prior-class0-a.png", "prior-class1-b.png"]
    result = runner.invoke(main, ["sample", str(run), "--condition", "all", "-n", "4", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    grids = sorted((tmp_path / "s").iterdir())
    assert [p.name for p in grids] == ["samples-t1-seed0-class0-a.png", "samples-t1-seed0-class1-b.png"]
    with Image.open(grids[0]) as a, Image.open(grids[1]) as b:
        assert a.size == b.size == (2 * SIZE + 3 * 2, 2 * SIZE + 3 * 2) and a.tobytes() != b.tobytes()
    inputs = [str(tmp_path / "images" / "a" / f"{i}.png") for i in (0, 1)]
    result = runner.invoke(main, ["reconstruct", str(run), *inputs, "--condition", "a", "--as", "b",
                                  "--out", str(tmp_path / "r")])
    assert result.exit_code == 0 and (tmp_path / "r" / "reconstructions-as-class1-b.png").exists(), result.output


def test_export_gives_a_conv_decoder_and_encoder_that_match_the_model(tmp_path):
    """`vaezoo export --part all` on a conv image VAE: TorchScript parts equal to the model."""
    import torch

    import vaezoo

    recipe = write_tiny(tmp_path)
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"]).exit_code == 0
    result = runner.invoke(main, ["export", str(run), "--part", "all", "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    model = vaezoo.open_run(run, device="cpu").vae
    decoder, encoder = (torch.jit.load(str(tmp_path / "export" / f"{p}.pt")) for p in ("decoder", "encoder"))
    z = torch.randn(9, 2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (decoder(z) - model.decode(z).mean).abs().max() <= 1e-4
        mean, logvar = encoder(x)
        q = model.encode({"x": x})
        assert (mean - q.mean).abs().max() <= 1e-4 and (logvar - q.logvar).abs().max() <= 1e-4
