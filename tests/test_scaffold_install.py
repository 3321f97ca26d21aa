"""The scaffold as a stranger uses it: write, pip install -e, discover, check, train, test, uninstall.

Runs against the test environment's own interpreter with pip's --no-deps --no-build-isolation,
so it needs no network (setuptools comes with the test extra). The modality name is unique
per run, so parallel runs on one environment do not step on each other.
"""

import json
import math
import os
import subprocess
import sys
from importlib.util import find_spec

from vaezoo.plugin.scaffold import new_plugin


def run(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_scaffold_installs_discovers_checks_trains_and_passes_its_tests(tmp_path):
    assert find_spec("setuptools") is not None, "setuptools is needed to pip install -e without build isolation"
    name = f"scaffolded_{os.getpid()}"
    root = new_plugin(name, tmp_path / "plugin")
    installed = run("-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation", "-e", str(root))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        # Discovery through the entry point, in a fresh interpreter.
        listed = run("-m", "vaezoo.cli", "plugins", "--json")
        assert listed.returncode == 0, listed.stderr
        row = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}[name]
        assert (row["status"], row["distribution"], row["api_version"]) == ("ok", f"vaezoo-scaffolded-{os.getpid()}", "1.6")
        assert row["location"] == str(root / f"vaezoo_{name}" / "modality.py")
        # Listing it read the class's attributes without torch: the template imports torch in methods.
        cheap = run("-c", f"import sys, vaezoo_{name}; print(sorted({{'torch', 'numpy'}} & set(sys.modules)))")
        assert cheap.stdout.strip() == "[]", cheap.stdout + cheap.stderr

        checked = run("-m", "vaezoo.cli", "plugins", "check", name)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith(f"ok  {name} (")

        run_dir = tmp_path / "run"
        trained = run("-m", "vaezoo.cli", "train", f"{name}-quick", "--run-dir", str(run_dir),
                      "--no-progress", "--set", "train.epochs=1", "--set", "train.tensorboard=false")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert math.isfinite(json.loads((run_dir / "eval.json").read_text())["elbo"])
        assert (run_dir / "samples" / "prior.csv").read_text().startswith("sample,x0,")
        assert (run_dir / f"{name}-stats.json").is_file()

        tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        summary = tested.stdout.splitlines()[-1]
        assert " passed" in summary and not any(word in summary for word in ("failed", "error", "skipped"))
    finally:
        removed = run("-m", "pip", "uninstall", "-q", "--disable-pip-version-check", "-y", f"vaezoo-scaffolded-{os.getpid()}")
    assert removed.returncode == 0, removed.stderr
    gone = run("-m", "vaezoo.cli", "plugins", "--json")
    assert name not in {p["name"] for p in json.loads(gone.stdout)["plugins"]}
