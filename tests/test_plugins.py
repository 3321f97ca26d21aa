"""Plugin discovery through entry points in a temporary distribution, including broken ones."""

import json

import pytest
from click.testing import CliRunner

from tiny_modality import TINY_RECIPE
from vaezoo.plugin import registry as plugins
from vaezoo.cli import main
from vaezoo.plugin.protocol import PLUGIN_API_VERSION

ENTRY_POINTS = """\
[vaezoo.modalities]
good = tiny_modality:TinyVectors
broken = broken_plugin:Broken
future = future_plugin:FutureModality
notamodality = json:dumps
exits = exiting_plugin:Modality
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A distribution 'vaezoo-test-plugins' visible to importlib.metadata, as pip would install it."""
    site = tmp_path / "site"
    info = site / "vaezoo_test_plugins-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vaezoo-test-plugins\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "broken_plugin.py").write_text('raise ImportError("libsndfile.so.9: cannot open shared object file")\n')
    (site / "exiting_plugin.py").write_text('import sys\nsys.exit("no licence key found")\n')
    (site / "future_plugin.py").write_text(
        "from tiny_modality import TinyVectors\n\nclass FutureModality(TinyVectors):\n    api_version = 99\n"
    )
    monkeypatch.syspath_prepend(str(site))
    plugins.refresh()
    yield site
    monkeypatch.undo()
    plugins.refresh()


def test_discovery_reports_status_of_each_plugin(installed):
    found = plugins.discover()
    assert found["good"].status == "ok"
    assert found["good"].distribution == "vaezoo-test-plugins" and found["good"].version == "1.2.3"
    assert found["good"].api_version == PLUGIN_API_VERSION
    assert found["good"].location.endswith("tiny_modality.py")
    assert found["broken"].status == "broken"
    assert found["broken"].error == "ImportError: libsndfile.so.9: cannot open shared object file"
    assert found["future"].status == "incompatible" and "plugin API 99" in found["future"].error
    assert found["notamodality"].status == "broken" and "is not a modality" in found["notamodality"].error
    assert found["exits"].status == "broken" and found["exits"].error == "SystemExit: no licence key found"


def test_plugins_command_lists_them(installed):
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "good" in result.output and "vaezoo-test-plugins 1.2.3" in result.output
    assert "ImportError: libsndfile.so.9" in result.output
    data = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    status = {p["name"]: p["status"] for p in data["plugins"] if p["distribution"] == "vaezoo-test-plugins"}
    assert status == {"broken": "broken", "future": "incompatible", "good": "ok", "notamodality": "broken",
                      "exits": "broken"}


def test_a_plugin_that_exits_at_import_breaks_nothing_else(installed, tmp_path, monkeypatch):
    """sys.exit() in a plugin's import is a broken plugin, not the end of `vaezoo recipes`."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0 and "fashion-mnist-quick" in result.output
    result = CliRunner().invoke(main, ["recipes", "no-such-recipe"])
    assert result.exit_code == 2 and "no such file or recipe" in result.output
    bad = tmp_path / "exits.toml"
    bad.write_text(TINY_RECIPE.replace('"tiny_modality:TinyVectors"', '"exits"'))
    result = CliRunner().invoke(main, ["train", str(bad), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "SystemExit: no licence key found" in result.output
    assert not (tmp_path / "run").exists()


def test_broken_plugin_breaks_only_its_own_recipes(installed, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(TINY_RECIPE.replace('"tiny_modality:TinyVectors"', '"good"').replace("epochs = 3", "epochs = 1"))
    result = CliRunner().invoke(main, ["train", str(good), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    for name, reason in [("broken", "ImportError: libsndfile.so.9"), ("future", "plugin API 99")]:
        bad = tmp_path / f"{name}.toml"
        bad.write_text(TINY_RECIPE.replace('"tiny_modality:TinyVectors"', f'"{name}"'))
        result = CliRunner().invoke(main, ["train", str(bad), "--run-dir", str(tmp_path / name)])
        assert result.exit_code == 2
        assert f"modality: modality {name!r} cannot be used" in result.output and reason in result.output
        assert "Traceback" not in result.output
