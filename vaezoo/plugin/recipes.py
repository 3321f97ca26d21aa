"""Recipes as users meet them: files and names, validated with the sections of the plugin they name.

``build_recipe`` asks the plugin registry for the modality's sections and hands them to
``vaezoo.config.recipe.parse_recipe``, which knows nothing of plugins. ``load_recipe`` reads a
file, applies ``--set`` overrides and builds; ``resolve_recipe_path`` finds a recipe by name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from vaezoo.config.options import did_you_mean
from vaezoo.config.recipe import Recipe, apply_overrides, parse_recipe, read_toml, recipe_modality
from vaezoo.core.errors import PluginError, RecipeError
from vaezoo.plugin.registry import get_modality, recipe_folders


def build_recipe(
    raw: dict, *, source: str, base_dir: Path, cli_keys: Iterable[str] = frozenset(), check_paths: bool = True
) -> Recipe:
    """Validate a raw recipe table (after overrides) into a ``Recipe`` of the plugin it names.

    Every problem is reported at once (one ``RecipeError``, a line each); when the modality
    cannot be loaded, that is the first line and the core sections are still checked."""
    sections: dict[str, type] | None = None
    problems: list[RecipeError] = []
    try:
        sections = get_modality(recipe_modality(raw, source)).sections
    except PluginError as err:
        problems.append(RecipeError(source, "modality", str(err)))
    except RecipeError as err:
        problems.append(err)
    return parse_recipe(raw, plugin_sections=sections, source=source, base_dir=base_dir, cli_keys=cli_keys,
                        check_paths=check_paths, problems=problems)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    raw, keys = apply_overrides(read_toml(path), overrides)
    return build_recipe(raw, source=str(path), base_dir=path.resolve().parent, cli_keys=keys)


def recipe_dirs(plugins: bool = True) -> list[Path]:
    """Where `vaezoo recipes` and recipe names look, first match winning: $VAEZOO_RECIPES,
    ./recipes, the source tree's recipes/, then (with ``plugins``) the folders plugins ship."""
    dirs = []
    if os.environ.get("VAEZOO_RECIPES"):
        dirs.append(Path(os.environ["VAEZOO_RECIPES"]))
    dirs.append(Path.cwd() / "recipes")
    dirs.append(Path(__file__).resolve().parents[2] / "recipes")  # a source checkout's recipes/
    if plugins:
        dirs += recipe_folders()
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def list_recipes(plugins: bool = True) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in recipe_dirs(plugins):
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def resolve_recipe_path(name_or_path: str) -> Path:
    """A recipe file path, or the name of a recipe in the recipe folders."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".toml" or "/" in name_or_path:
        return path
    # The plugins' folders are searched last, and only when needed: that imports every plugin.
    known = list_recipes(plugins=False)
    if name_or_path not in known:
        known = list_recipes()
    if name_or_path in known:
        return known[name_or_path]
    raise RecipeError(name_or_path, None, f"no such file or recipe{did_you_mean(name_or_path, known)}; recipes: {', '.join(known) or 'none'}")
