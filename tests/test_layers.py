"""The import-layer contract of the vaezoo package.

    core < config < plugin < train < analysis < cli < the public namespace (vaezoo, vaezoo.nn)

A module may import modules of its own layer or of the layers below it, never above; and no
two modules import each other, directly or round a circle. Imports under
``if TYPE_CHECKING:`` exist for type checkers only and may point anywhere (they never run).
The top-level namespace loads its names lazily, so at run time ``import vaezoo`` imports
nothing but the version.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vaezoo"
LAYERS = {"core": 1, "config": 2, "plugin": 3, "train": 4, "analysis": 5, "cli": 6, "__init__": 7, "nn": 7}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported vaezoo module, line, only for type checkers) of every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    type_checking_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                type_checking_lines.update(range(child.lineno, child.end_lineno + 1))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from vaezoo.x import y" may import the module vaezoo.x.y, or a name of vaezoo.x.
            names = [f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == "vaezoo" or name.startswith("vaezoo."):
                found.append((name, node.lineno, node.lineno in type_checking_lines))
    return found


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "scaffold_template" not in p.parts}


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for name, path in modules().items():
        for target, line, type_only in imports(path):
            if not type_only and layer(target) > layer(name):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} (layer {layer(name)}) imports "
                              f"{target} (layer {layer(target)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_circles():
    graph = {name: sorted({t for t, _, type_only in imports(path) if not type_only and t != name})
             for name, path in modules().items()}
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in graph.get(node, []):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_contract_catches_what_it_should(tmp_path, monkeypatch):
    """The checks above find an upward import and a circle when there is one."""
    fake = tmp_path / "vaezoo"
    for rel, text in {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "from vaezoo.train import t\n",
        "core/b.py": "import vaezoo.core.c\n",
        "core/c.py": "from vaezoo.core import b\n",
        "train/__init__.py": "",
        "train/t.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vaezoo.analysis import x\n",
        "analysis/__init__.py": "",
        "analysis/x.py": "",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    try:
        test_no_module_imports_from_a_layer_above_its_own()
        raise AssertionError("the upward import was not found")
    except AssertionError as err:
        assert "vaezoo.core.a (layer 1) imports vaezoo.train.t (layer 4)" in str(err)
        assert "analysis" not in str(err)          # TYPE_CHECKING imports are allowed
    try:
        test_no_import_circles()
        raise AssertionError("the circle was not found")
    except AssertionError as err:
        assert "vaezoo.core.b -> vaezoo.core.c -> vaezoo.core.b" in str(err)


def test_importing_vaezoo_loads_no_layer_and_no_torch():
    code = ("import sys, vaezoo; loaded = sorted(m for m in sys.modules if m.startswith('vaezoo'));"
            "print(loaded, 'torch' in sys.modules); assert vaezoo.Modality.__name__ == 'Modality'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['vaezoo', 'vaezoo.core', 'vaezoo.core.lazy', 'vaezoo.core.version'] False", out
