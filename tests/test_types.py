"""The type check: mypy over the core, every built-in plugin and a freshly rendered scaffold plugin.

The settings are pyproject.toml's ``[tool.mypy]`` (its ``files`` are the core and the built-in
plugin packages; ``.venv/bin/mypy`` alone checks those). The scaffold is rendered into a
temporary folder and checked with them, package and tests, as a new plugin's author gets it.
The cache lives in the temporary folder too, so every run is a cold one (about 20 s).
"""

import re
import subprocess
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path

from vaezoo.plugin.scaffold import render, template_values

ROOT = Path(__file__).resolve().parent.parent
SCAFFOLD_NAME = "typecheck_probe"


def test_core_plugins_and_scaffold_pass_mypy(tmp_path):
    assert find_spec("mypy") is not None, "mypy is missing: pip install -e '.[test]' (make test does)"
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    plugins = sorted(p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("plugins/*/vaezoo_*/__init__.py"))
    assert plugins and set(plugins) <= set(files), f"[tool.mypy] files must list every built-in plugin: {plugins}"

    scaffold = tmp_path / "scaffold"
    render(SCAFFOLD_NAME, scaffold)
    targets = [*files, str(scaffold / template_values(SCAFFOLD_NAME)["package"]), str(scaffold / "tests")]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy-cache"), "--no-color-output", *targets],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"mypy found type errors:\n{result.stdout}{result.stderr}"
    # Every module was checked: none skipped by a path or configuration mistake.
    expected = sum(len(list((ROOT / f).rglob("*.py"))) for f in files) + len(list(scaffold.rglob("*.py")))
    checked = re.search(r"no issues found in (\d+) source files", result.stdout)
    assert checked and int(checked[1]) == expected, result.stdout + result.stderr
