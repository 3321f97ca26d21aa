import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
# Subprocesses (torchrun, the CLI) find the tiny modality the same way.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))

from tiny_modality import TINY_RECIPE  # noqa: E402  (needs tests/ on sys.path)




@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="session")
def labelled_run(tmp_path_factory) -> Path:
    """A trained run of the tiny modality whose batches carry labels (tests only read it)."""
    from click.testing import CliRunner

    from vaezoo.cli import main

    root = tmp_path_factory.mktemp("labelled")
    recipe = root / "labelled.toml"
    recipe.write_text(TINY_RECIPE.replace("TinyVectors", "LabelledTiny"))
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(root / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "run"
