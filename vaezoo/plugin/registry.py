"""Plugin registry: modalities found through the ``vaezoo.modalities`` entry-point group.

Discovery never raises: a plugin that fails to import, is not a modality, or targets
another plugin-API version is listed with its status and reason, and only a command that
asks for that modality fails (with a clear message). A recipe may also name a modality by
import path, ``"package.module:ClassName"``, which is handy while writing a plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

from vaezoo.config.options import did_you_mean
from vaezoo.core.errors import PluginError
from vaezoo.plugin.protocol import PLUGIN_API_VERSION

ENTRY_POINT_GROUP = "vaezoo.modalities"
REQUIRED_MEMBERS = ("name", "api_version", "sections", "dataset", "build_encoder", "build_decoder")


@dataclass
class PluginInfo:
    name: str
    target: str                       # "module:attribute" the entry point names
    distribution: str | None
    version: str | None
    api_version: int | None
    location: str | None
    status: Literal["ok", "incompatible", "broken"]
    error: str | None = None
    modality: type | None = None
    #: the status in words: "ok", "incompatible API version", "failed to import", "not a modality"
    status_text: str = "ok"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _inspect(name: str, target: str, dist: str | None, version: str | None, loader) -> PluginInfo:
    info = PluginInfo(name, target, dist, version, None, None, "broken")
    try:
        obj = loader()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # a plugin may fail in any way (even sys.exit()); report it, never crash discovery
        info.error = _first_line(err)
        info.status_text = "failed to import"
        try:
            spec = importlib.util.find_spec(target.split(":")[0].split(".")[0]) if "." in target or ":" in target else None
        except (ImportError, ValueError):
            spec = None
        info.location = getattr(spec, "origin", None) if spec else None
        return info
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    info.location = getattr(module, "__file__", None)
    missing = [m for m in REQUIRED_MEMBERS if not hasattr(obj, m)]
    if missing:
        info.error = f"{target} is not a modality: it lacks {', '.join(missing)}"
        info.status_text = "not a modality"
        return info
    info.api_version = obj.api_version
    if obj.api_version != PLUGIN_API_VERSION:
        info.status = "incompatible"
        info.status_text = "incompatible API version"
        info.error = f"written for plugin API {obj.api_version}; this vaezoo provides API {PLUGIN_API_VERSION}"
        return info
    info.status = "ok"
    info.modality = obj
    return info


@lru_cache(maxsize=1)
def discover() -> dict[str, PluginInfo]:
    """All modalities registered in the entry-point group, keyed by entry-point name."""
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        found[ep.name] = _inspect(ep.name, ep.value, dist, version, ep.load)
    return dict(sorted(found.items()))


def recipe_folders() -> list[Path]:
    """The recipe folders that loadable plugins ship (``Modality.recipe_folder``), in plugin-name order."""
    folders = []
    for info in discover().values():
        folder = getattr(info.modality, "recipe_folder", None) if info.status == "ok" else None
        module_file = getattr(sys.modules.get(info.modality.__module__), "__file__", None) if folder else None
        if module_file:
            folders.append(Path(module_file).resolve().parent / folder)
    return folders


def refresh() -> None:
    """Forget cached discovery results (after installing a plugin in the same process)."""
    discover.cache_clear()
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
        return _inspect(name, name, None, None, lambda: _load_import_path(name))
    plugins = discover()
    if name not in plugins:
        installed = ", ".join(plugins) or "none"
        raise PluginError(f"unknown modality {name!r}{did_you_mean(name, plugins)}; installed: {installed}")
    return plugins[name]


def get_modality(name: str) -> type:
    """The modality class for ``name``, or a ``PluginError`` saying why it cannot be used."""
    info = plugin_info(name)
    if info.status != "ok":
        raise PluginError(f"modality {name!r} cannot be used ({info.status}): {info.error}")
    return info.modality


def listing(found: dict[str, PluginInfo], as_json: bool = False) -> str:
    """What `vaezoo plugins` prints: a table, one plugin per row with its problem below, or JSON."""
    rows = [
        {"name": p.name, "status": p.status, "status_text": p.status_text, "distribution": p.distribution,
         "version": p.version, "api_version": p.api_version, "location": p.location, "error": p.error}
        for p in found.values()
    ]
    if as_json:
        return json.dumps({"plugin_api_version": PLUGIN_API_VERSION, "plugins": rows}, indent=2)
    lines = [f"plugin API {PLUGIN_API_VERSION}; entry-point group {ENTRY_POINT_GROUP}"]
    if not rows:
        return "\n".join(lines + ["no modality plugins installed"])
    table = [("NAME", "STATUS", "DISTRIBUTION", "API", "LOCATION")]
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "-"
        api = "?" if r["api_version"] is None else str(r["api_version"])
        table.append((r["name"], r["status_text"], dist, api, r["location"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row, r in zip(table, [None] + rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
        if r is not None and r["error"]:
            lines.append(" " * (widths[0] + 2) + r["error"])
    return "\n".join(lines)
