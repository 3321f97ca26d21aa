"""`vaezoo options [MODALITY]`: every recipe key as commented TOML, and docs/recipes.md from the same source."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from test_plugins import installed  # noqa: F401  (fixture: a distribution holding broken plugins)
from vaezoo.cli import main
from vaezoo.config.options import document_section
from vaezoo.config.recipe import CORE_SECTIONS
from vaezoo.config.reference import MARKDOWN_COMMAND
from vaezoo.plugin.recipes import build_recipe
from vaezoo.plugin.registry import get_modality

DOCS = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
BUILTIN = ["audio", "image", "tabular", "text"]


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _sections(modality: str | None) -> dict[str, type]:
    return {**CORE_SECTIONS, **(get_modality(modality).sections if modality else {})}


def test_docs_recipes_md_is_what_the_code_generates():
    result = cli("options", "--markdown", *BUILTIN)
    assert result.exit_code == 0, result.output
    assert DOCS.read_text() == result.output, f"docs/recipes.md is out of date; refresh it with `{MARKDOWN_COMMAND}`"
    assert MARKDOWN_COMMAND in DOCS.read_text()   # the page says how to refresh it


def test_reference_lists_every_key_with_its_help():
    text = DOCS.read_text()
    for modality in [None, *BUILTIN]:
        for section, cls in _sections(modality).items():
            assert f"### `[{section}]`" in text
            for doc in document_section(cls):
                assert f"| `{doc.key}` | {doc.allowed.replace('|', chr(92) + '|')} |" in text, (section, doc.key)


def test_every_option_has_a_help_text():
    for modality in [None, *BUILTIN]:
        for section, cls in _sections(modality).items():
            missing = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]
            assert not missing, f"[{section}] of {modality or 'the core'}: no help= for {missing}"


def test_options_without_a_modality_prints_the_core_and_the_installed_modalities():
    result = cli("options")
    assert result.exit_code == 0, result.output
    raw = tomllib.loads(result.output)         # valid TOML, every default written out
    assert set(raw) == {"seed", *CORE_SECTIONS}
    for section, cls in CORE_SECTIONS.items():
        for doc in document_section(cls):
            assert raw[section][doc.key] == doc.default, (section, doc.key)
    lines = result.output.splitlines()
    assert "# peak learning rate" in lines and any(line.startswith("lr = 0.001 ") and line.endswith("# a number > 0.0")
                                                   for line in lines)
    assert any(line.startswith("#   image ") and "PNG grids" in line for line in lines)   # the installed modalities
    assert "# modality = ..." in result.output


@pytest.mark.parametrize("modality", [*BUILTIN, "tiny_modality:TinyVectors"])
def test_options_for_a_modality_paste_into_a_recipe_that_equals_the_defaults(modality, tmp_path):
    result = cli("options", modality)
    assert result.exit_code == 0, result.output
    raw = tomllib.loads(result.output)
    assert raw["modality"] == modality
    assert set(raw) == {"modality", "seed", *_sections(modality)}
    for section, cls in _sections(modality).items():
        for doc in document_section(cls):
            assert f"# {doc.help}" in result.output.replace("\n#   ", " ")   # help texts, wrapped as comments
            if doc.required or doc.default is None:
                assert f"# {doc.key} = ..." in result.output and doc.key not in raw[section]
    # Required keys are commented out; filled in, the pasted recipe is the default recipe.
    minimal = {"modality": modality, "data": {"path": str(tmp_path)}} if modality in BUILTIN else {"modality": modality}
    for section in raw:
        if isinstance(raw[section], dict) and section in minimal:
            raw[section].update(minimal[section])
    pasted = build_recipe(raw, source="pasted", base_dir=tmp_path, check_paths=False)
    defaults = build_recipe(minimal, source="pasted", base_dir=tmp_path, check_paths=False)
    assert pasted.to_dict() == defaults.to_dict()


def test_options_refuses_unknown_and_several_modalities():
    result = cli("options", "imgae")
    assert result.exit_code == 2 and result.output.startswith("error: unknown modality 'imgae' (did you mean 'image'?)")
    result = cli("options", "image", "text")
    assert result.exit_code == 2 and "give one MODALITY" in result.output


def test_options_lists_broken_plugins_with_their_reason(installed):
    result = cli("options")
    assert result.exit_code == 0, result.output
    assert "#   broken " in result.output and "(failed to import: ImportError: libsndfile.so.9" in result.output
    assert "#   good " in result.output and "the good test plugin" in result.output
