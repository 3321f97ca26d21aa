"""Plugin discovery through entry points in temporary distributions, including broken ones:
missing members, a name that differs from the entry point's, two distributions claiming one
name, and the (major, minor) plugin-API version rules."""

import json
import sys

import pytest
from click.testing import CliRunner

from tiny_modality import TINY_RECIPE
from vaezoo.cli import main
from vaezoo.core.errors import PluginError
from vaezoo.plugin import registry as plugins
from vaezoo.plugin.protocol import (
    PLUGIN_API_VERSION, REQUIRED_MEMBERS, ApiVersion, Modality, api_version_problem, missing_members, parse_api_version,
)

ENTRY_POINTS = """\
[vaezoo.modalities]
good = good_plugin:Good
broken = broken_plugin:Broken
future = future_plugin:FutureModality
notamodality = json:dumps
exits = exiting_plugin:Modality
misnamed = tiny_modality:TinyVectors
nodecoder = good_plugin:NoDecoder
duck = good_plugin:Duck
twice = good_plugin:Twice
v1 = versions:V1
v1_0 = versions:V1_0
v1_7 = versions:V1_7
v0_9 = versions:V0_9
v2 = versions:V2
vtext = versions:VText
"""

GOOD_PLUGIN = '''\
import torch

import vaezoo
from tiny_modality import Decoder, Encoder, TinyData, TinyModel, TinyVectors, make_points


class Good(TinyVectors):
    name = "good"
    description = "the good test plugin"


class NoDecoder(vaezoo.Modality):
    name = "nodecoder"
    api_version = 1
    sections = {}

    def dataset(self, split):
        return []

    def build_encoder(self):
        return torch.nn.Identity()


class Duck:
    """A modality that does not subclass vaezoo.Modality: the required members only, API 1.0."""

    name = "duck"
    api_version = 1
    sections = {"data": TinyData, "model": TinyModel}

    def __init__(self, recipe, run_dir=None):
        self.recipe, self.run_dir = recipe, run_dir

    def dataset(self, split):
        d = self.recipe.data
        return list(make_points(d.n if split == "train" else 16, d.dim, d.noise, len(split)))

    def build_encoder(self):
        return Encoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim)

    def build_decoder(self):
        return Decoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim)


class Twice(Good):
    name = "twice"
'''

# One class per declared version, each named like its entry point.
VERSIONS = '''\
from tiny_modality import TinyVectors


def declaring(name, version):
    return type(name.upper(), (TinyVectors,), {"name": name, "api_version": version})


V1 = declaring("v1", 1)
V1_0 = declaring("v1_0", (1, 0))
V1_7 = declaring("v1_7", (1, 7))
V0_9 = declaring("v0_9", (0, 9))
V2 = declaring("v2", 2)
VText = declaring("vtext", "1.1")
'''


def _distribution(site, name: str, version: str, entry_points: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Distributions 'vaezoo-test-plugins' and 'vaezoo-rival' visible to importlib.metadata, as
    pip would install them; both register the name 'twice'."""
    site = tmp_path / "site"
    _distribution(site, "vaezoo-test-plugins", "1.2.3", ENTRY_POINTS)
    _distribution(site, "vaezoo-rival", "0.4.0", "[vaezoo.modalities]\ntwice = rival_plugin:Twice\n")
    (site / "broken_plugin.py").write_text('raise ImportError("libsndfile.so.9: cannot open shared object file")\n')
    (site / "exiting_plugin.py").write_text('import sys\nsys.exit("no licence key found")\n')
    (site / "future_plugin.py").write_text(
        "from tiny_modality import TinyVectors\n\nclass FutureModality(TinyVectors):\n"
        "    name = 'future'\n    api_version = 99\n"
    )
    (site / "good_plugin.py").write_text(GOOD_PLUGIN)
    (site / "versions.py").write_text(VERSIONS)
    (site / "rival_plugin.py").write_text("raise RuntimeError('a conflicting plugin must not be imported')\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.refresh()
    yield site
    monkeypatch.undo()
    plugins.refresh()
    for module in ("good_plugin", "versions", "future_plugin", "broken_plugin", "exiting_plugin", "rival_plugin"):
        sys.modules.pop(module, None)


def test_discovery_reports_status_of_each_plugin(installed):
    found = plugins.discover()
    assert found["good"].status == "ok"
    assert found["good"].distribution == "vaezoo-test-plugins" and found["good"].version == "1.2.3"
    assert found["good"].api_version == PLUGIN_API_VERSION
    assert found["good"].location.endswith("good_plugin.py")
    assert found["good"].description == "the good test plugin"
    assert found["broken"].status == "broken"
    assert found["broken"].error == "ImportError: libsndfile.so.9: cannot open shared object file"
    assert found["future"].status == "incompatible" and "plugin API 99" in found["future"].error
    assert found["notamodality"].status == "broken"
    assert found["notamodality"].error == "json:dumps is not a modality: it names a function, not a class"
    assert found["exits"].status == "broken" and found["exits"].error == "SystemExit: no licence key found"


def test_plugins_command_lists_them(installed):
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    good = next(i for i, line in enumerate(lines) if line.startswith("good "))
    assert "vaezoo-test-plugins 1.2.3" in lines[good] and " 1.6 " in lines[good]
    assert lines[good + 1].strip() == "the good test plugin"   # the description, below its row
    assert "ImportError: libsndfile.so.9" in result.output
    data = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    assert data["plugin_api_version"] == "1.6"
    rows = {p["name"]: p for p in data["plugins"] if p["distribution"] == "vaezoo-test-plugins"}
    status = {name: (row["status"], row["status_text"]) for name, row in rows.items()}
    assert status == {
        "broken": ("broken", "failed to import"), "future": ("incompatible", "incompatible API version"),
        "good": ("ok", "ok"), "notamodality": ("broken", "not a modality"), "exits": ("broken", "failed to import"),
        "misnamed": ("broken", "name mismatch"), "nodecoder": ("broken", "not a modality"), "duck": ("ok", "ok"),
        "twice": ("broken", "conflict"), "v1": ("ok", "ok"), "v1_0": ("ok", "ok"),
        "v1_7": ("incompatible", "incompatible API version"), "v0_9": ("incompatible", "incompatible API version"),
        "v2": ("incompatible", "incompatible API version"), "vtext": ("broken", "not a modality"),
    }
    assert rows["good"]["description"] == "the good test plugin" and rows["good"]["api_version"] == "1.6"
    assert rows["v1"]["api_version"] == "1.0" and rows["broken"]["api_version"] is None


def test_a_class_that_lacks_a_required_member_is_not_a_modality(installed):
    info = plugins.discover()["nodecoder"]
    assert (info.status, info.status_text) == ("broken", "not a modality")
    assert info.error == "good_plugin:NoDecoder is not a modality: it lacks build_decoder"
    from good_plugin import NoDecoder

    with pytest.raises(TypeError, match="build_decoder"):   # abc keeps it from being built at all
        NoDecoder(None)
    assert Modality.__abstractmethods__ == frozenset(REQUIRED_MEMBERS)
    assert missing_members(Modality) == list(REQUIRED_MEMBERS)
    # a subclass that does not set a required class attribute stays abstract, though the base names it
    no_name = type("NoName", (Modality,), {"api_version": 1, "sections": {}, "dataset": NoDecoder.dataset,
                                           "build_encoder": NoDecoder.build_encoder, "build_decoder": NoDecoder.build_encoder})
    assert missing_members(no_name) == ["name"] and no_name.__abstractmethods__ == {"name"}


def test_a_duck_typed_modality_loads_and_gets_the_defaults(installed, tmp_path):
    info = plugins.discover()["duck"]
    assert info.status == "ok", info.error
    cls = plugins.get_modality("duck")
    assert issubclass(cls, Modality) and cls.__name__ == "Duck" and cls.__module__ == "good_plugin"
    recipe = tmp_path / "duck.toml"
    recipe.write_text(TINY_RECIPE.replace('"tiny_modality:TinyVectors"', '"duck"').replace("epochs = 3", "epochs = 1"))
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output   # collate, writers, uses_latent ... are Modality's defaults
    assert list((tmp_path / "run" / "samples").glob("*.safetensors"))


def test_the_entry_point_name_must_be_the_modality_name(installed):
    info = plugins.discover()["misnamed"]
    assert (info.status, info.status_text) == ("broken", "name mismatch")
    assert info.error == ("the entry point is named 'misnamed' but tiny_modality:TinyVectors.name is 'tiny'; "
                          "the plugin must use one name for both")
    with pytest.raises(PluginError, match="'misnamed' cannot be used"):
        plugins.get_modality("misnamed")
    # an import path names no entry point, so there is nothing to compare
    assert plugins.get_modality("tiny_modality:TinyVectors").name == "tiny"


def test_two_distributions_claiming_one_name_are_both_reported(installed):
    rows = [info for info in plugins.entries() if info.name == "twice"]
    assert sorted(info.distribution for info in rows) == ["vaezoo-rival", "vaezoo-test-plugins"]
    for info in rows:
        assert (info.status, info.status_text, info.modality) == ("broken", "conflict", None)
        assert "vaezoo-rival 0.4.0 (rival_plugin:Twice)" in info.error
        assert "vaezoo-test-plugins 1.2.3 (good_plugin:Twice)" in info.error
    assert "rival_plugin" not in sys.modules   # neither is loaded
    with pytest.raises(PluginError, match=r"'twice' cannot be used \(conflict\).*vaezoo-rival.*uninstall"):
        plugins.get_modality("twice")
    table = CliRunner().invoke(main, ["plugins"]).output.splitlines()
    assert len([line for line in table if line.startswith("twice ") and " conflict " in line]) == 2


@pytest.mark.parametrize("name, status, reason", [
    ("v1", "ok", None),
    ("v1_0", "ok", None),
    ("v1_7", "incompatible", "written for plugin API 1.7; this vaezoo provides 1.6: upgrade vaezoo"),
    ("v2", "incompatible", "written for plugin API 2.0; this vaezoo provides 1.6: upgrade vaezoo"),
    ("v0_9", "incompatible",
     "written for plugin API 0.9; this vaezoo provides 1.6: the plugin needs a release for plugin API 1.x"),
    ("vtext", "broken",
     "versions:VText is not a modality: api_version '1.1' is neither an integer N nor a tuple (major, minor) of integers"),
])
def test_api_version_major_and_minor(installed, name, status, reason):
    """An int N means (N, 0); an older minor loads, a newer minor or another major does not."""
    info = plugins.discover()[name]
    assert (info.status, info.error) == (status, reason)
    assert (info.modality is not None) == (status == "ok")


def test_version_rules():
    assert PLUGIN_API_VERSION == (1, 6) and str(PLUGIN_API_VERSION) == "1.6"
    assert parse_api_version(1) == (1, 0) and parse_api_version((1, 1)) == ApiVersion(1, 1)
    for bad in (True, "1", 1.1, (1,), (1, "1"), (1, 2, 3), -1, [1, 1]):
        with pytest.raises(ValueError):
            parse_api_version(bad)
    assert api_version_problem(ApiVersion(1, 0)) is None and api_version_problem(ApiVersion(1, 1)) is None
    assert api_version_problem(ApiVersion(1, 2)) is None and api_version_problem(ApiVersion(1, 3)) is None
    assert api_version_problem(ApiVersion(1, 4)) is None and api_version_problem(ApiVersion(1, 6)) is None
    assert api_version_problem(ApiVersion(1, 7)).endswith("upgrade vaezoo")


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
    for name, reason in [("broken", "ImportError: libsndfile.so.9"), ("future", "plugin API 99"),
                         ("misnamed", "the entry point is named 'misnamed'"), ("twice", "neither is loaded")]:
        bad = tmp_path / f"{name}.toml"
        bad.write_text(TINY_RECIPE.replace('"tiny_modality:TinyVectors"', f'"{name}"'))
        result = CliRunner().invoke(main, ["train", str(bad), "--run-dir", str(tmp_path / name)])
        assert result.exit_code == 2
        assert f"modality: modality {name!r} cannot be used" in result.output and reason in result.output
        assert "Traceback" not in result.output
