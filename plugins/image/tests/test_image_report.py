"""The run report of an image run: PNG grids from the writers, a latent map with class names."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import tomli_w
from click.testing import CliRunner

from vaezoo.cli import main


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_of_an_image_run(class_folder, tmp_path):
    recipe = tmp_path / "folder.toml"
    recipe.write_text(tomli_w.dumps({
        "modality": "image", "name": "bags-and-shoes", "latent": {"dim": 3},
        "data": {"path": str(class_folder), "size": 8, "test_fraction": 0.25},
        "model": {"architecture": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 6, "samples": 9, "tensorboard": False},
        "eval": {"iw_samples": 3},
    }))
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(main, ["train", str(recipe), "--run-dir", str(run), "--no-progress"]).exit_code == 0
    result = runner.invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    parser = Images()
    parser.feed((run / "report.html").read_text())
    assert parser.sources == ["curves.png", "samples/prior.png", "samples/reconstructions.png", "latent-map/test-pca.png"]
    assert all((run / src).is_file() for src in parser.sources)
    # The labels come from the class sub-folders, and their names reach the map.
    info = json.loads((run / "latent-map" / "test-pca.json").read_text())
    assert info["label_names"] == ["bag", "shoe"] and info["color_by"] == "label" and info["clusters"] == 2
    assert info["n_points"] == 6                                  # 25% of 24 images held out for test
