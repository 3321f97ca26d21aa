"""Class labels from sub-folder names: data.labels = "folder" and data.label_depth."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

import vaezoo
from vaezoo import InputError
from vaezoo.cli import main
from vaezoo_audio import AudioModality

from audio_helpers import make_recipe, recipe_text, sine_sweep, sound_folder, write_audio, one_thread  # noqa: F401

#: klettres-like: language / kind / recordings (short sounds, plus a long sweep of several clips
#: where the count is above 1); "zz" has a single recording, so it lies in one split only
LAYOUT = {("cs", "alpha"): 3, ("cs", "syllab"): 3, ("en", "alpha"): 3, ("en", "syllab"): 2, ("zz", "alpha"): 1}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels") / "sounds"
    for (language, kind), n in LAYOUT.items():
        if n > 1:
            write_audio(root / language / kind / "long.wav", sine_sweep(0.6))   # 76 frames: 5 clips of 16
            n -= 1
        sound_folder(root / language / kind, n)
    return root


def expected(root, path, depth, names):
    return names.index(path.relative_to(root).parts[depth - 1])


@pytest.mark.parametrize("depth, names", [(1, ["cs", "en", "zz"]), (2, ["alpha", "syllab"])])
def test_every_clip_carries_the_class_of_its_folder_at_the_chosen_depth(sounds, tmp_path, depth, names):
    modality = AudioModality(make_recipe(sounds, data={"labels": "folder", "label_depth": depth}), tmp_path)
    modality.fit(tmp_path)
    assert modality.label_names == names
    seen, tiles, files = set(), 0, 0
    for split in ("train", "validation", "test"):
        dataset = modality.dataset(split)
        if split == "train":
            pairs = [(i, dataset.files[i]) for i in range(len(dataset))]
        else:   # tiled: several clips per recording, each with the recording's label
            pairs = [(i, dataset.files[file]) for i, (file, _) in enumerate(dataset.plan)]
            tiles, files = tiles + len(dataset.plan), files + len(dataset.files)
        for i, path in pairs:
            item = dataset[i]
            assert item["label"].dtype == torch.long and item["label"].dim() == 0
            assert int(item["label"]) == expected(sounds, path, depth, names)
            seen.add(int(item["label"]))
        batch = next(iter(DataLoader(dataset, batch_size=5)))
        assert batch["label"].dtype == torch.int64 and batch["label"].shape == (min(5, len(dataset)),)
    assert seen == set(range(len(names)))
    assert tiles > files   # some held-out recordings are cut into several clips


def test_label_names_come_from_every_recording_whatever_the_split(sounds, tmp_path):
    """"zz" holds one recording, in one split only; the classes and their indices never change."""
    for seed in range(4):
        modality = AudioModality(make_recipe(sounds, data={"labels": "folder", "split_seed": seed}), tmp_path)
        modality.fit(tmp_path)
        assert modality.label_names == ["cs", "en", "zz"]
        zz = [split for split in ("train", "validation", "test")
              if any(p.parts[-3] == "zz" for p in modality.dataset(split).files)]
        assert len(zz) == 1
        for split in ("train", "validation", "test"):
            dataset = modality.dataset(split)
            labels = dataset.labels.tolist()
            assert labels == [["cs", "en", "zz"].index(p.relative_to(sounds).parts[0]) for p in dataset.files]


def test_without_labels_batches_are_as_before(sounds, tmp_path):
    plain = AudioModality(make_recipe(sounds), tmp_path / "plain")
    labelled = AudioModality(make_recipe(sounds, data={"labels": "folder"}), tmp_path / "labelled")
    assert plain.recipe.data.labels == "none" and plain.label_names is None
    assert "label" not in plain.example_batch(2) and labelled.example_batch(2)["label"].tolist() == [0, 0]
    for modality, run_dir in ((plain, tmp_path / "plain"), (labelled, tmp_path / "labelled")):
        run_dir.mkdir()
        modality.fit(run_dir)
    for split in ("train", "test"):
        torch.manual_seed(3)   # the same random crops
        a = next(iter(DataLoader(plain.dataset(split), batch_size=6)))
        torch.manual_seed(3)
        b = next(iter(DataLoader(labelled.dataset(split), batch_size=6)))
        assert set(a) == {"x", "length"} and set(b) == {"x", "length", "label"}
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["length"], b["length"])


def test_a_recording_shallower_than_label_depth_is_one_line_and_exit_2(sounds, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(sounds, data={"labels": "folder", "label_depth": 3}))
    result = cli("train", recipe, "--run-dir", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert [x for x in lines if not x.startswith("run directory: ")] == [lines[-1]]   # one error line
    line = lines[-1]
    assert line.startswith(f"error: {sounds / 'cs' / 'alpha' / 'long.wav'}: ")   # the first file, sorted
    assert "label_depth = 3" in line and "2 level(s) deep" in line and "data.label_depth from 1 to 2" in line

    loose = tmp_path / "loose"
    sound_folder(loose / "cs", 3)
    sound_folder(loose, 1)   # loose/sound-00.wav: in no class folder at all
    modality = AudioModality(make_recipe(loose, data={"labels": "folder"}), tmp_path)
    with pytest.raises(InputError, match=r"loose/sound-00.wav: .*0 level\(s\) deep; allowed: a recording in a class"):
        modality.label_names
    assert AudioModality(make_recipe(loose), tmp_path).label_names is None   # labels = "none": any layout


def test_the_options_are_documented():
    result = cli("options", "audio")
    assert result.exit_code == 0, result.output
    assert "label_depth" in result.output and "folder" in result.output


def test_a_labelled_run_trains_and_its_latent_map_names_the_classes(sounds, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(sounds, data={"labels": "folder"}, train={"samples": 0}))
    result = cli("train", recipe, "--run-dir", tmp_path / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    result = cli("latent-map", tmp_path / "run")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "run" / "latent-map"
    info = json.loads((folder / "test-pca.json").read_text())
    assert info["label_names"] == ["cs", "en", "zz"] and info["color_by"] == "label"
    assert info["adjusted_rand_index"] is not None
    with (folder / "test-pca.csv").open() as f:
        rows = list(csv.DictReader(f))
    # One point per test clip, each with its recording's class.
    modality = AudioModality(make_recipe(sounds, data={"labels": "folder"}), tmp_path / "run")
    test = modality.dataset("test")
    assert len(rows) == info["n_points"] == len(test.plan)
    want = [["cs", "en", "zz"].index(test.files[file].relative_to(sounds).parts[0]) for file, _ in test.plan]
    assert [int(r["label"]) for r in rows] == want


def test_a_conditional_mel_vae_trains_and_samples_every_class(sounds, tmp_path):
    """[condition] on audio: a language-conditional decoder; one WAV set per class."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(sounds, data={"labels": "folder"}, train={"samples": 2})
                      + "\n[condition]\nenabled = true\nembedding_dim = 4\nencoder = false\n")
    result = cli("train", recipe, "--run-dir", tmp_path / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    samples = tmp_path / "run" / "samples"
    for name in ("cs", "en", "zz"):
        assert list(samples.glob(f"prior-class*-{name}-*.wav")), sorted(p.name for p in samples.iterdir())
    result = cli("sample", tmp_path / "run", "--condition", "en", "-n", "2", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in (tmp_path / "s").iterdir()).count(".wav") == 2
    run = vaezoo.open_run(tmp_path / "run", device="cpu")
    z = torch.zeros(3, run.vae.latent_dim)
    mel = run.vae.decode(z, torch.arange(3)).mean
    assert not torch.allclose(mel[0], mel[1])
    assert run.vae.condition.to_encoder is False
    # z (and the class) -> waveform, Griffin-Lim included, as one TorchScript module; from zero
    # phase it equals the plugin's own path with inversion.random_phase = false
    result = cli("export", tmp_path / "run", "--part", "output", "--out", tmp_path / "export")
    assert result.exit_code == 0, result.output
    exported = torch.jit.load(str(tmp_path / "export" / "output.pt"))
    fixed = vaezoo.open_run(tmp_path / "run", device="cpu", overrides=["inversion.random_phase=false"])
    with torch.no_grad():
        waves = exported(z, torch.arange(3))
        want = fixed.modality.to_waves(fixed.modality.log_mel(fixed.vae.decode(z, torch.arange(3)).mean))
    assert waves.shape == want.shape and (waves - want).abs().max() <= 1e-4
