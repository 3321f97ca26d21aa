"""The command line answers at once: commands that do no work import no torch.

Timing is machine- and load-dependent, so nothing here is timed (benchmarks/cli_startup.py
measures it); instead each command runs in a fresh interpreter that reports, as it exits,
which heavy packages it imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "transformers", "torchaudio", "tokenizers", "soundfile", "PIL", "matplotlib", "safetensors")

BUILTIN = ("vaezoo-audio", "vaezoo-image", "vaezoo-tabular", "vaezoo-text")

# Runs the CLI as the `vaezoo` script does and, at exit (after click's sys.exit), prints the
# heavy top-level packages that were imported. Discovery sees the built-in plugins only: a
# plugin installed meanwhile in the same environment (another test run's scaffold) is not ours to judge.
RUN_CLI = f"""
import atexit, importlib.metadata, sys
atexit.register(lambda: print("\\nIMPORTED", *sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr))
from vaezoo.plugin import registry
registry.entry_points = lambda **kw: [ep for ep in importlib.metadata.entry_points(**kw)
                                      if ep.dist is not None and ep.dist.metadata["Name"] in {BUILTIN!r}]
sys.argv = ["vaezoo", *sys.argv[1:]]
from vaezoo.cli import main
main()
"""


def imported_by(*args: str) -> tuple[list[str], subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-c", RUN_CLI, *args], capture_output=True, text=True, timeout=120)
    marker = [line for line in proc.stderr.splitlines() if line.startswith("IMPORTED")]
    assert marker, proc.stderr
    return marker[-1].split()[1:], proc


@pytest.mark.parametrize("args", [
    ["--help"], ["--version"], ["recipes"], ["recipes", "fashion-mnist-quick"], ["plugins"], ["plugins", "--json"],
    ["train", "--help"], ["eval", "--help"], ["plugins", "check", "--help"],
    ["options"], ["options", "image"], ["options", "text"], ["options", "audio"], ["options", "tabular"],
    ["options", "--markdown"],
])
def test_commands_that_do_no_work_import_no_torch(args):
    heavy, proc = imported_by(*args)
    assert proc.returncode == 0, proc.stderr
    assert heavy == [], f"vaezoo {' '.join(args)} imported {heavy}"


def test_listing_loads_every_builtin_plugin_class_without_torch():
    """`vaezoo plugins` imports each plugin's class (for its sections, description and recipe
    folder): the built-in plugins keep torch and their data, network and writer modules out of that."""
    heavy, proc = imported_by("plugins")
    assert heavy == []
    for name in ("image", "text", "audio", "tabular"):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"{name} "))
        assert row.split()[1] == "ok", proc.stdout


def test_a_command_that_works_still_imports_torch_when_it_runs(tmp_path):
    """The other side: the lazy imports happen (a broken one would only show when run)."""
    heavy, proc = imported_by("plugins", "check", "tiny_modality:TinyVectors")
    assert proc.returncode == 0, proc.stderr
    assert "torch" in heavy
