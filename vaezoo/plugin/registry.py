"""Plugin registry: modalities found through the ``vaezoo.modalities`` entry-point group.

Discovery never raises: a plugin that fails to import, is not a modality, targets a plugin
API this vaezoo cannot serve, gives its class another name than its entry point, or claims a
name another distribution claims too is listed with its status and reason, and only a
command that asks for that modality fails (with a clear message). A recipe may also name a
modality by import path, ``"package.module:ClassName"``, which is handy while writing a
plugin (no entry point, so no name to compare).

Loading a plugin's class imports its module only; the built-in plugins import torch when
an instance first needs it, so listing plugins and reading their sections stay cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterable, Literal, cast

from vaezoo.config.options import did_you_mean
from vaezoo.config.recipe import CORE_SECTIONS, TOP_LEVEL
from vaezoo.core.errors import PluginError
from vaezoo.plugin.protocol import (
    PLUGIN_API_VERSION, REQUIRED_MEMBERS, ApiVersion, Modality, api_version_problem, missing_members,
    parse_api_version, with_defaults,
)

ENTRY_POINT_GROUP = "vaezoo.modalities"
__all__ = ["ENTRY_POINT_GROUP", "REQUIRED_MEMBERS", "PluginInfo", "discover", "entries", "get_modality", "listing",
           "plugin_info", "recipe_folders", "refresh"]


@dataclass
class PluginInfo:
    name: str
    target: str                       # "module:attribute" the entry point names
    distribution: str | None
    version: str | None
    api_version: ApiVersion | None    # as declared, read as (major, minor)
    location: str | None
    status: Literal["ok", "incompatible", "broken"]
    error: str | None = None
    modality: type[Modality] | None = None   # set when status is "ok"
    #: the status in words: "ok", "incompatible API version", "failed to import", "not a modality",
    #: "name mismatch", "conflict"
    status_text: str = "ok"
    #: the class's one-line ``description``
    description: str | None = None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _module_location(target: str) -> str | None:
    """The file of the target's top-level package, found without importing the plugin."""
    try:
        spec = importlib.util.find_spec(target.split(":")[0].split(".")[0]) if "." in target or ":" in target else None
    except (ImportError, ValueError):
        spec = None
    return getattr(spec, "origin", None) if spec else None


def _not_a_modality(obj: Any, target: str) -> str | None:
    """Why ``obj`` is not a modality class, or None."""
    if not inspect.isclass(obj):
        return f"{target} is not a modality: it names a {type(obj).__name__}, not a class"
    missing = missing_members(obj)
    if missing:
        return f"{target} is not a modality: it lacks {', '.join(missing)}"
    cls: Any = obj
    name, sections = cls.name, cls.sections
    if not isinstance(name, str) or not name:
        return f"{target} is not a modality: name must be a non-empty string, got {name!r}"
    if not isinstance(sections, dict) or not all(isinstance(k, str) and dataclasses.is_dataclass(v)
                                                 for k, v in sections.items()):
        return f"{target} is not a modality: sections must map section names to config dataclasses, got {sections!r}"
    taken = [k for k in sections if k in CORE_SECTIONS or k in TOP_LEVEL]
    if taken:
        return f"{target} is not a modality: section {taken[0]!r} is the core's; choose another name"
    return None


def _inspect(name: str, target: str, dist: str | None, version: str | None, loader, entry_point: bool) -> PluginInfo:
    info = PluginInfo(name, target, dist, version, None, None, "broken")
    try:
        obj = loader()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # a plugin may fail in any way (even sys.exit()); report it, never crash discovery
        info.error = _first_line(err)
        info.status_text = "failed to import"
        info.location = _module_location(target)
        return info
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    info.location = getattr(module, "__file__", None)
    try:
        problem = _not_a_modality(obj, target)
    except Exception as err:  # reading a member of a plugin's class may run its code
        problem = f"{target} is not a modality: {_first_line(err)}"
    if problem is None:
        try:
            info.api_version = parse_api_version(obj.api_version)
        except ValueError as err:
            problem = f"{target} is not a modality: {err}"
    if problem is not None:
        info.error = problem
        info.status_text = "not a modality"
        return info
    description = getattr(obj, "description", None)
    info.description = description if isinstance(description, str) and description else None
    assert info.api_version is not None
    problem = api_version_problem(info.api_version)
    if problem is not None:
        info.status = "incompatible"
        info.status_text = "incompatible API version"
        info.error = problem
        return info
    if entry_point and obj.name != name:
        info.status_text = "name mismatch"
        info.error = (f"the entry point is named {name!r} but {target}.name is {obj.name!r}; "
                      "the plugin must use one name for both")
        return info
    info.status = "ok"
    info.modality = cast("type[Modality]", with_defaults(obj))
    return info


def _conflicts(name: str, eps: list) -> list[PluginInfo]:
    """Rows for an entry-point name that several distributions register: none is loaded."""
    owners = [f"{_dist_name(ep) or '?'} {_dist_version(ep) or ''}".rstrip() + f" ({ep.value})" for ep in eps]
    error = (f"the modality name {name!r} is registered by {len(eps)} distributions: {' and '.join(owners)}; "
             "neither is loaded: uninstall all but one")
    return [PluginInfo(name, ep.value, _dist_name(ep), _dist_version(ep), None, _module_location(ep.value), "broken",
                       error=error, status_text="conflict") for ep in eps]


def _dist_name(ep) -> str | None:
    return ep.dist.metadata["Name"] if ep.dist is not None else None


def _dist_version(ep) -> str | None:
    return ep.dist.version if ep.dist is not None else None


@lru_cache(maxsize=1)
def entries() -> tuple[PluginInfo, ...]:
    """Every entry point in the group, sorted by name: one row each, so a name that two
    distributions register gives two rows, both with status text "conflict"."""
    by_name: dict[str, list] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        by_name.setdefault(ep.name, []).append(ep)
    rows: list[PluginInfo] = []
    for name in sorted(by_name):
        eps = by_name[name]
        if len(eps) > 1:
            rows += _conflicts(name, eps)
        else:
            (ep,) = eps
            rows.append(_inspect(name, ep.value, _dist_name(ep), _dist_version(ep), ep.load, entry_point=True))
    return tuple(rows)


def discover() -> dict[str, PluginInfo]:
    """All modalities registered in the entry-point group, keyed by entry-point name (for a
    conflict, the first of its rows, whose error names every distribution involved)."""
    found: dict[str, PluginInfo] = {}
    for info in entries():
        found.setdefault(info.name, info)
    return found


def recipe_folders() -> list[Path]:
    """The recipe folders that loadable plugins ship (``Modality.recipe_folder``), in plugin-name order."""
    folders = []
    for info in discover().values():
        if info.status != "ok" or info.modality is None:
            continue
        folder = getattr(info.modality, "recipe_folder", None)
        module_file = getattr(sys.modules.get(info.modality.__module__), "__file__", None)
        if folder and module_file:
            folders.append(Path(module_file).resolve().parent / folder)
    return folders


def refresh() -> None:
    """Forget cached discovery results (after installing a plugin in the same process)."""
    entries.cache_clear()
    importlib.invalidate_caches()


def _load_import_path(target: str):
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def plugin_info(name: str) -> PluginInfo:
    """The registry entry for ``name`` (an entry-point name or "module:Class")."""
    if ":" in name:
        return _inspect(name, name, None, None, lambda: _load_import_path(name), entry_point=False)
    plugins = discover()
    if name not in plugins:
        installed = ", ".join(plugins) or "none"
        raise PluginError(f"unknown modality {name!r}{did_you_mean(name, plugins)}; installed: {installed}")
    return plugins[name]


def get_modality(name: str) -> type[Modality]:
    """The modality class for ``name``, or a ``PluginError`` saying why it cannot be used."""
    info = plugin_info(name)
    if info.status != "ok" or info.modality is None:
        status = "conflict" if info.status_text == "conflict" else info.status
        raise PluginError(f"modality {name!r} cannot be used ({status}): {info.error}")
    return info.modality


def listing(found: dict[str, PluginInfo] | Iterable[PluginInfo] | None = None, as_json: bool = False) -> str:
    """What `vaezoo plugins` prints: a table, one plugin per row with its description and
    problem below, or JSON. ``found`` defaults to every entry point (``entries()``)."""
    infos = list(entries() if found is None else found.values() if isinstance(found, dict) else found)
    rows = [
        {"name": p.name, "status": p.status, "status_text": p.status_text, "distribution": p.distribution,
         "version": p.version, "api_version": None if p.api_version is None else str(p.api_version),
         "location": p.location, "description": p.description, "error": p.error}
        for p in infos
    ]
    if as_json:
        return json.dumps({"plugin_api_version": str(PLUGIN_API_VERSION), "plugins": rows}, indent=2)
    lines = [f"plugin API {PLUGIN_API_VERSION}; entry-point group {ENTRY_POINT_GROUP}"]
    if not rows:
        return "\n".join(lines + ["no modality plugins installed"])
    table = [("NAME", "STATUS", "DISTRIBUTION", "API", "LOCATION")]
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "-"
        table.append((r["name"], r["status_text"], dist, r["api_version"] or "?", r["location"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines.append("  ".join(cell.ljust(w) for cell, w in zip(table[0], widths)) + "  " + table[0][4])
    for row, r in zip(table[1:], rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
        for note in (r["description"], r["error"]):
            if note:
                lines.append(" " * (widths[0] + 2) + note)
    return "\n".join(lines)
