"""`vaezoo new-plugin`: write a new modality plugin distribution from the templates.

The templates are real files under ``vaezoo/plugin/scaffold_template/`` (packaged as package data),
rendered with ``string.Template``: ``$name`` (the modality), ``$package`` (``vaezoo_NAME``),
``$distribution`` (``vaezoo-NAME``), ``$class_name``, ``$api_version`` (the core's plugin-API
version as a Python tuple, ``(1, 1)``) and ``$api_version_text`` (``1.1``) in file contents
and in file and folder names; a ``.tmpl`` suffix is dropped. The distribution is written
into a temporary folder beside the target and renamed into place, so a failure never leaves
a half-written plugin behind.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path
from string import Template

from vaezoo.core.errors import VaezooError
from vaezoo.plugin.protocol import PLUGIN_API_VERSION

TEMPLATE_DIR = Path(__file__).resolve().parent / "scaffold_template"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")
MAX_NAME_LENGTH = 40
# Names a recipe or the core already uses for something else.
RESERVED = {"vaezoo", "latent", "objective", "train", "eval", "test", "tests", "modality"}


class ScaffoldError(VaezooError):
    """A plugin name or target folder that `vaezoo new-plugin` cannot use."""

    exit_code = 2


def template_values(name: str) -> dict[str, str]:
    return {
        "name": name,
        "package": f"vaezoo_{name}",
        "distribution": f"vaezoo-{name.replace('_', '-')}",
        "class_name": "".join(part.capitalize() for part in name.split("_")) + "Modality",
        "api_version": repr(tuple(PLUGIN_API_VERSION)),
        "api_version_text": str(PLUGIN_API_VERSION),
    }


def check_name(name: str) -> None:
    """Refuse names that are not lowercase Python identifiers, or that are taken."""
    from vaezoo.plugin.registry import discover

    allowed = "a lowercase letter, then lowercase letters, digits or underscores (a Python identifier such as 'vectors' or 'point_cloud')"
    if not NAME_PATTERN.match(name) or name.endswith("_") or "__" in name:
        raise ScaffoldError(f"invalid plugin name {name!r}: expected {allowed}")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"invalid plugin name {name!r}: a Python keyword; expected {allowed}")
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"invalid plugin name {name!r}: at most {MAX_NAME_LENGTH} characters")
    if name in RESERVED:
        raise ScaffoldError(f"invalid plugin name {name!r}: reserved by vaezoo ({', '.join(sorted(RESERVED))})")
    installed = discover()
    if name in installed:
        where = installed[name].distribution or installed[name].target
        raise ScaffoldError(f"a modality named {name!r} is already installed (from {where}); choose another name")
    package = template_values(name)["package"]
    if find_spec(package) is not None:
        raise ScaffoldError(f"a Python package named {package!r} is already installed; choose another name")


def render(name: str, target: Path) -> list[Path]:
    """Write every template into ``target`` (which must not exist yet); returns the files."""
    values = template_values(name)
    files = []
    for source in sorted(TEMPLATE_DIR.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = Template(str(source.relative_to(TEMPLATE_DIR))).substitute(values).removesuffix(".tmpl")
        out = target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(Template(source.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        files.append(out)
    return files


def new_plugin(name: str, target: Path | None = None) -> Path:
    """Create the distribution for modality ``name`` in ``target`` (default ./vaezoo-NAME)."""
    check_name(name)
    target = Path(target) if target is not None else Path(template_values(name)["distribution"])
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty folder; choose a new --dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        render(name, staging)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual mode
        os.replace(staging, target)  # atomic; replaces an empty folder too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def example_markdown(name: str = "vectors") -> str:
    """Every rendered file as a Markdown section, for the worked example in docs/plugins.md."""
    languages = {".py": "python", ".toml": "toml", ".md": "markdown"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / template_values(name)["distribution"]
        parts = []
        # The order a reader needs: packaging, the package, a recipe, tests, the README.
        def place(path: Path) -> tuple:
            parts = path.relative_to(root).parts
            if parts[0] == "pyproject.toml":
                return (0, path)
            return (2, path) if "recipes" in parts else ({"tests": 3, "README.md": 4}.get(parts[0], 1), path)

        for path in sorted(render(name, root), key=place):
            relative = path.relative_to(root.parent).as_posix()
            fence = "````" if path.suffix == ".md" else "```"  # a README holds ``` blocks itself
            parts.append(f"### `{relative}`\n\n{fence}{languages.get(path.suffix, '')}\n{path.read_text()}{fence}\n")
    return "\n".join(parts)


def next_steps(name: str, target: Path) -> str:
    """What `vaezoo new-plugin` prints after writing the plugin."""
    return "\n".join([
        f"wrote {target} ({template_values(name)['distribution']}, modality {name!r}); next:",
        f"  pip install -e {target}",
        f"  vaezoo plugins check {name}",
        f"  vaezoo train {name}-quick --run-dir runs/{name}",
        f"  (cd {target} && pytest)",
        "then replace its data, networks and writers with yours: docs/plugins.md explains each member",
    ])
