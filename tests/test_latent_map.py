"""`vaezoo latent-map`: PCA against its closed form, k-means/ARI, and the files the command writes."""

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vaezoo.cli import main
from vaezoo.analysis.latent_map import adjusted_rand_index, kmeans, pca_2d
from vaezoo.analysis.latents import encode_split
from vaezoo.train.runs import open_run


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_points(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_pca_projects_onto_the_axes_of_largest_variance():
    t = torch.tensor([-3.0, -1.0, 1.0, 3.0]).repeat_interleave(2)          # variance along axis 2
    s = torch.tensor([-1.0, 1.0]).repeat(4)                                 # smaller, along axis 0
    x = torch.stack([0.5 * s, torch.zeros(8), t + 7.0], 1)                  # offset must not matter
    points, share = pca_2d(x)
    torch.testing.assert_close(points[:, 0], t)                             # sign: largest loading positive
    torch.testing.assert_close(points[:, 1], 0.5 * s)
    total = (t**2).sum() + (0.25 * s**2).sum()
    assert share == pytest.approx([float((t**2).sum() / total), float((0.25 * s**2).sum() / total)])
    one_dim, _ = pca_2d(x[:, 2:])                                           # D = 1: second coordinate 0
    assert torch.equal(one_dim[:, 1], torch.zeros(8))


def test_kmeans_finds_separated_blobs_and_ari_is_exact():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    labels = torch.arange(3).repeat_interleave(20)
    x = centres[labels] + 0.1 * torch.randn(60, 3, generator=g)
    clusters = kmeans(x, 3, seed=0)
    assert adjusted_rand_index(clusters, labels) == 1.0                     # cluster ids need not match labels
    # Closed form: labels [0,0,1,1] vs clusters [0,1,0,1] -> index 0, expected index 1/3 -> ARI -0.5.
    assert adjusted_rand_index(torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])) == pytest.approx(-0.5)


def test_latent_map_plots_every_example_of_the_split(labelled_run, tmp_path):
    result = cli("latent-map", labelled_run, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "adjusted Rand index" in result.output
    rows = read_points(tmp_path / "test-pca.csv")
    run = open_run(labelled_run)
    test_set = run.modality.dataset("test")
    assert len(rows) == len(test_set) == 32                                 # n = 128 -> 32 test vectors
    # The plotted points are the PCA of the posterior means, and the labels those of the data.
    latents = encode_split(run, "test")
    expected, _ = pca_2d(latents.mean)
    plotted = torch.tensor([[float(r["x"]), float(r["y"])] for r in rows])
    torch.testing.assert_close(plotted, expected, rtol=1e-4, atol=1e-4)
    assert [int(r["label"]) for r in rows] == test_set.tensors[1].tolist()
    info = json.loads((tmp_path / "test-pca.json").read_text())
    assert info["n_points"] == 32 and info["color_by"] == "label" and info["clusters"] == 4
    assert info["label_names"] == ["--", "-+", "+-", "++"]
    clusters = torch.tensor([int(r["cluster"]) for r in rows])
    assert info["adjusted_rand_index"] == pytest.approx(adjusted_rand_index(clusters, latents.label))
    with Image.open(tmp_path / "test-pca.png") as image:
        assert image.format == "PNG" and image.size == (700, 600)


def test_latent_map_tsne_and_limits(labelled_run, tmp_path):
    result = cli("latent-map", labelled_run, "--method", "tsne", "--max-examples", 20, "--color-by", "cluster",
                 "--clusters", 3, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = read_points(tmp_path / "test-tsne.csv")
    assert len(rows) == 20 and {r["cluster"] for r in rows} == {"0", "1", "2"}
    assert json.loads((tmp_path / "test-tsne.json").read_text())["explained_variance"] is None


def test_latent_map_without_labels_colours_by_cluster(tmp_path, tiny_recipe):
    run = tmp_path / "run"
    assert cli("train", tiny_recipe, "--run-dir", run, "--no-progress").exit_code == 0
    result = cli("latent-map", run, "--color-by", "label")
    assert result.exit_code == 2
    assert "carries no labels" in result.output and "--color-by cluster" in result.output
    result = cli("latent-map", run, "--split", "validation")
    assert result.exit_code == 0, result.output
    assert "Rand" not in result.output
    info = json.loads((run / "latent-map" / "validation-pca.json").read_text())
    assert info["color_by"] == "cluster" and info["adjusted_rand_index"] is None
    assert all(r["label"] == "" for r in read_points(run / "latent-map" / "validation-pca.csv"))


def test_encode_keeps_the_labels_and_cuts_at_max_examples(labelled_run, tmp_path):
    from safetensors.torch import load_file

    result = cli("encode", labelled_run, "--max-examples", 20, "--out", tmp_path / "z.safetensors")
    assert result.exit_code == 0, result.output
    z = load_file(str(tmp_path / "z.safetensors"))
    test_set = open_run(labelled_run).modality.dataset("test")
    assert z["mean"].shape == (20, 2) and torch.equal(z["label"], test_set.tensors[1][:20])
