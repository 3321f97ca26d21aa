"""Recipes described from their schema: what `vaezoo options` prints and docs/recipes.md holds.

Both come from the same source as validation: the config dataclasses (the core's sections in
``vaezoo.config.recipe`` and each modality's ``sections``) with the type, default, range and
help text of every ``option(...)``. ``options_toml`` writes commented TOML that pastes into a
recipe; ``options_markdown`` writes the reference page. This layer knows nothing of plugins:
callers pass each modality's name, description and sections.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Iterable

import tomli_w

from vaezoo.config.options import OptionDoc, document_section
from vaezoo.config.recipe import CORE_SECTIONS, TOP_LEVEL_HELP

WIDTH = 96
#: the command that rewrites docs/recipes.md (named in its header and by the test that checks it)
MARKDOWN_COMMAND = "vaezoo options --markdown audio image tabular text > docs/recipes.md"


@dataclass
class ModalityDoc:
    """What the reference says about one modality."""

    name: str
    sections: dict[str, type]
    description: str = ""
    distribution: str | None = None


def _toml_value(value: Any) -> str:
    """A default as a TOML value on one line: paths as strings, lists inline."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if hasattr(value, "__fspath__"):
        value = str(value)
    return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")


def _comment(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ",
                         break_on_hyphens=False) or [f"{indent}#"]


def _keyed(pairs: list[tuple[list[str], str, str]]) -> list[str]:
    """Comment lines, then ``key = value`` with its allowed values as a comment aligned after it."""
    column = min(max((len(line) for _, line, _ in pairs), default=0) + 2, 40)
    out = []
    for above, line, note in pairs:
        out += above + [f"{line:<{column}}# {note}" if note else line]
    return out


def _toml_section(section: str, cls: type) -> list[str]:
    pairs: list[tuple[list[str], str, str]] = []
    tables: list[tuple[str, type]] = []
    for doc in document_section(cls):
        if doc.table is not None:
            tables.append((f"{section}.{doc.key}", doc.table))
            continue
        above = _comment(doc.help) if doc.help else []
        if doc.required:
            pairs.append((above, f"# {doc.key} = ...", f"{doc.allowed}; required, no default"))
        elif doc.default is None:
            pairs.append((above, f"# {doc.key} = ...", f"{doc.allowed}; unset by default"))
        else:
            pairs.append((above, f"{doc.key} = {_toml_value(doc.default)}", doc.allowed))
    lines = [f"[{section}]", *_keyed(pairs)]
    for name, table in tables:
        lines += [""] + _toml_section(name, table)
    return lines


def options_toml(modality: ModalityDoc | None = None, installed: Iterable[ModalityDoc | tuple[str, str]] = ()) -> str:
    """Every section and key of a recipe as commented TOML, each key at its default: the core's
    sections, then ``modality``'s own. Without a modality, ``installed`` lists what can go in
    ``modality = "..."`` (each a ``ModalityDoc`` or a (name, note) pair)."""
    if modality is not None:
        head = [f"# A recipe for the {modality.name!r} modality: every key at its default (`vaezoo options {modality.name}`).",
                "# Paste it into a .toml file and keep the keys you change; a key left out takes its default.",
                f"# [latent], [objective], [train] and [eval] are the core's; {_and(modality.sections)} are {modality.name}'s."]
        first = (_comment(TOP_LEVEL_HELP["modality"]), f"modality = {_toml_value(modality.name)}", "a string")
    else:
        head = ["# The core's recipe sections: every key at its default (`vaezoo options`).",
                "# `vaezoo options MODALITY` adds the modality's own sections and fills in `modality`."]
        first = (_comment(TOP_LEVEL_HELP["modality"]), "# modality = ...", "a string; required")
    top = _keyed([first, (_comment(TOP_LEVEL_HELP["name"]), "# name = ...", "a string"),
                  (_comment(TOP_LEVEL_HELP["seed"]), "seed = 0", "an integer >= 0")])
    lines = head + [""] + top
    sections = {**CORE_SECTIONS, **(modality.sections if modality is not None else {})}
    for section, cls in sections.items():
        lines += [""] + _toml_section(section, cls)
    if modality is None:
        rows = [(m.name, m.description) if isinstance(m, ModalityDoc) else m for m in installed]
        lines += ["", "# Installed modalities (`vaezoo options NAME` prints a recipe with a modality's own sections):"]
        width = max((len(name) for name, _ in rows), default=0)
        lines += [f"#   {name:<{width}}  {note}".rstrip() for name, note in rows] or ["#   none (see `vaezoo plugins`)"]
    return "\n".join(lines) + "\n"


def _and(names: Iterable[str]) -> str:
    names = [f"[{n}]" for n in names]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names) or "no sections"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_section(section: str, cls: type, level: str) -> list[str]:
    lines = [f"{level} `[{section}]`", "", "| key | allowed | default | meaning |", "|---|---|---|---|"]
    tables: list[tuple[str, type]] = []
    for doc in document_section(cls):
        if doc.table is not None:
            tables.append((f"{section}.{doc.key}", doc.table))
        default = "required" if doc.required else "unset" if doc.default is None else f"`{_toml_value(doc.default)}`"
        lines.append(f"| `{doc.key}` | {_cell(doc.allowed)} | {_cell(default)} | {_cell(doc.help)} |")
    for name, table in tables:
        lines += [""] + _markdown_section(name, table, level)
    return lines


def options_markdown(modalities: Iterable[ModalityDoc] = ()) -> str:
    """The recipe reference (docs/recipes.md): top-level keys, the core's sections, then each
    modality's own sections."""
    modalities = list(modalities)
    lines = [
        "# Recipe reference",
        "",
        "<!-- Generated from the code: do not edit. Refresh with",
        f"     {MARKDOWN_COMMAND}",
        "     (tests/test_options.py fails while it is out of date). -->",
        "",
        "Every key a recipe may hold, with its type and range, its default and what it does: the",
        "same text `vaezoo options [MODALITY]` prints as commented TOML, ready to paste into a",
        "recipe. A key left out takes its default; a key marked *required* has none. Relative paths",
        "are relative to the recipe file (with `--set`, to the shell's folder). Any key can be",
        "overridden on the command line: `--set section.key=value` (`--set section.key=` unsets it).",
        "",
        "Contents: [top level](#top-level) · [core sections](#core-sections)"
        + "".join(f" · [{m.name}](#modality-{m.name})" for m in modalities),
        "",
        "## Top level",
        "",
        "| key | meaning |",
        "|---|---|",
        *(f"| `{key}` | {_cell(text)} |" for key, text in TOP_LEVEL_HELP.items()),
        "",
        "## Core sections",
        "",
        "Every recipe has these, whatever its modality.",
    ]
    for section, cls in CORE_SECTIONS.items():
        lines += [""] + _markdown_section(section, cls, "###")
    for m in modalities:
        lines += ["", f"## Modality `{m.name}`", ""]
        if m.description:
            lines += [f"{m.description.rstrip('.')}.", ""]
        source = f"From the distribution `{m.distribution}`: " if m.distribution else ""
        lines += [f"{source}`modality = \"{m.name}\"`; `vaezoo options {m.name}` prints a whole recipe for it."]
        for section, cls in m.sections.items():
            lines += [""] + _markdown_section(section, cls, "###")
    return "\n".join(lines) + "\n"


__all__ = ["MARKDOWN_COMMAND", "ModalityDoc", "OptionDoc", "options_markdown", "options_toml"]
