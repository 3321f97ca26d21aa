"""Every recipe in recipes/ parses, and each VAE-GAN recipe is its plain twin plus the stage
(so that `vaezoo report --compare` and benchmarks/vaegan.py compare like with like)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaezoo.config.recipe import read_toml
from vaezoo.plugin.recipes import build_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def parse(path: Path):
    # check_paths=False: the recipes stay checkable where the data sets are not installed.
    return build_recipe(read_toml(path), source=str(path), base_dir=RECIPES, check_paths=False)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    recipe = parse(path)
    assert recipe.name == path.stem


@pytest.mark.parametrize("gan, plain", [("fashion-mnist-vaegan-quick", "fashion-mnist-quick"),
                                        ("fashion-mnist-vaegan", "fashion-mnist-quick"),
                                        ("klettres-vaegan-quick", "klettres-quick"),
                                        ("klettres-vaegan", "klettres-mel-vae")])
def test_a_vaegan_recipe_is_its_plain_twin_plus_the_stage(gan, plain):
    a, b = parse(RECIPES / f"{gan}.toml").to_dict(), parse(RECIPES / f"{plain}.toml").to_dict()
    assert a["adversarial"]["enabled"] and not b["adversarial"]["enabled"]
    assert a.keys() == b.keys()
    for section in a.keys() - {"name", "adversarial", "train"}:
        assert a[section] == b[section], section
    # The full versions may train longer than their twins; nothing else of [train] differs.
    differing = {k for k in a["train"] if a["train"][k] != b["train"][k]}
    assert differing <= {"epochs", "early_stopping_patience"}, differing
