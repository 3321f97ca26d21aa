"""The shipped klettres recipes parse, and their numbers agree with the comments in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaezoo.config.recipe import read_toml
from vaezoo.plugin.recipes import build_recipe

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.mark.parametrize("name", ["klettres-quick", "klettres-mel-vae"])
def test_klettres_recipes_are_valid(name):
    path = RECIPES / f"{name}.toml"
    # check_paths=False: the recipes stay checkable where klettres-data is not installed.
    recipe = build_recipe(read_toml(path), source=str(path), base_dir=RECIPES, check_paths=False)
    assert recipe.modality == "audio" and recipe.data.path == Path("/usr/share/klettres")
    f = recipe.features
    assert f.sample_rate == 16000 and f.hop_length == 256
    assert (recipe.data.clip_frames - 1) * f.hop_length / f.sample_rate == pytest.approx(1.0, abs=0.02)
