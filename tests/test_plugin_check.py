"""`vaezoo plugins`, `vaezoo plugins check` and `vaezoo new-plugin` refusals, in process."""

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_plugins import installed  # noqa: F401  (fixture: a distribution holding broken plugins)

import vaezoo
from vaezoo.plugin import scaffold
from vaezoo.cli import main
from vaezoo.plugin.check import PluginCheckError


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_check_passes_on_a_good_plugin_and_reports_what_it_built():
    result = cli("plugins", "check", "tiny_modality:TinyVectors")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok  tiny_modality:TinyVectors (")
    assert "example batch: x [4, 8] float32" in result.output
    assert "gradients reach encoder and decoder" in result.output


def test_check_uses_example_recipe_and_set_overrides():
    report = vaezoo.check_plugin("broken_modalities:NeedsExampleRecipe")
    assert report.latent_dim == 3 and report.batch == {"x": "[4, 5] float32"}
    report = vaezoo.check_plugin("broken_modalities:NeedsExampleRecipe", ["data.dim=7", "latent.dim=2"], batch_size=6)
    assert report.latent_dim == 2 and report.batch == {"x": "[6, 7] float32"}


@pytest.mark.parametrize(
    "target, line",
    [
        ("UnsummedLogProb", "decoder log_prob: returned [4, 8] float32, expected [4] (log p(x|z) summed per example)"),
        ("WrongLatentSize", "encoder: mean has shape [4, 17] float32, expected [4, 16] (N examples x latent.dim)"),
        ("DetachedDecoder", "backward: no gradient reaches the decoder's parameters"),
        ("BatchSizeBound", "IWAE (k=2): RuntimeError: expected 4 latent rows, got 8"),
        ("NoDataAvailable", "example_batch: FileNotFoundError: /data/vectors.csv"),
        ("NotAModule", "build_encoder: returned function, not a torch.nn.Module"),
        ("TensorDiscriminator", "discriminator: returned Tensor; a discriminator returns a list with one list per "
                                "scale of tensors: its feature maps, then its logits (see vaezoo.core.discriminators)"),
    ],
)
def test_check_names_the_broken_stage_in_one_line(target, line):
    result = cli("plugins", "check", f"broken_modalities:{target}")
    assert result.exit_code == PluginCheckError.exit_code == 1
    assert result.output == f"error: plugins check broken_modalities:{target}: {line}\n"


def test_check_of_unknown_or_unimportable_plugins_exits_2():
    result = cli("plugins", "check", "nosuchplugin")
    assert result.exit_code == 2 and result.output.startswith("error: unknown modality 'nosuchplugin'")
    result = cli("plugins", "check", "no_such_module:Thing")
    assert result.exit_code == 2
    assert result.output == ("error: modality 'no_such_module:Thing' cannot be used (broken): "
                             "ModuleNotFoundError: No module named 'no_such_module'\n")
    result = cli("plugins", "check", "tiny_modality:TinyVectors", "--set", "data.dim=1")
    assert result.exit_code == 2 and "[data] dim: must be >= 2, got 1" in result.output


def test_plugins_lists_columns_and_json_still_works():
    result = cli("plugins")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[1].split()
    assert header == ["NAME", "STATUS", "DISTRIBUTION", "API", "LOCATION"]
    data = json.loads(cli("plugins", "--json").output)
    assert data["plugin_api_version"] == str(vaezoo.PLUGIN_API_VERSION) == "1.6"
    for row in data["plugins"]:
        assert set(row) >= {"name", "status", "status_text", "distribution", "version", "api_version", "location",
                            "description", "error"}


# -- new-plugin refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, reason",
    [
        ("Vectors", "invalid plugin name 'Vectors': expected a lowercase letter"),
        ("my-plugin", "invalid plugin name 'my-plugin': expected"),
        ("2d", "invalid plugin name '2d': expected"),
        ("a__b", "invalid plugin name 'a__b': expected"),
        ("class", "invalid plugin name 'class': a Python keyword"),
        ("train", "invalid plugin name 'train': reserved by vaezoo"),
        ("x" * 41, "at most 40 characters"),
        ("image", "a modality named 'image' is already installed (from vaezoo-image); choose another name"),
        ("tiny_modality_x", None),  # control: a good name passes the name checks
    ],
)
def test_new_plugin_rejects_bad_names(tmp_path, name, reason):
    result = cli("new-plugin", name, "--dir", tmp_path / "out")
    if reason is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and result.output.startswith("error: ") and reason in result.output
    assert len(result.output.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_new_plugin_refuses_a_non_empty_folder_and_fills_an_empty_one(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    result = cli("new-plugin", "vecs", "--dir", target)
    assert result.exit_code == 2
    assert result.output == f"error: {target} already exists and is not an empty folder; choose a new --dir\n"
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("")
    assert cli("new-plugin", "vecs", "--dir", tmp_path / "file").exit_code == 2
    (tmp_path / "empty").mkdir()
    result = cli("new-plugin", "vecs", "--dir", tmp_path / "empty")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "empty" / "vaezoo_vecs" / "modality.py").is_file()
    assert oct((tmp_path / "empty").stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_new_plugin_leaves_nothing_behind_when_writing_fails(tmp_path, monkeypatch):
    def fail_halfway(name, target):
        (target / "pyproject.toml").write_text("half")
        raise OSError("No space left on device")

    monkeypatch.setattr(scaffold, "render", fail_halfway)
    with pytest.raises(OSError):
        scaffold.new_plugin("vecs", tmp_path / "vaezoo-vecs")
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_default_folder_and_rendered_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("new-plugin", "point_cloud")
    assert result.exit_code == 0, result.output
    root = tmp_path / "vaezoo-point-cloud"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "tests/test_point_cloud.py",
                     "vaezoo_point_cloud/__init__.py", "vaezoo_point_cloud/config.py", "vaezoo_point_cloud/data.py",
                     "vaezoo_point_cloud/modality.py", "vaezoo_point_cloud/networks.py",
                     "vaezoo_point_cloud/recipes/point_cloud-quick.toml"]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "vaezoo-point-cloud"' in pyproject
    assert 'point_cloud = "vaezoo_point_cloud:PointCloudModality"' in pyproject
    assert "$" not in "".join((root / f).read_text() for f in files)


def test_docs_worked_example_is_what_the_scaffold_writes():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    assert scaffold.example_markdown("vectors") in docs


@pytest.mark.parametrize("name", ["image", "text", "audio"])
def test_builtin_plugins_pass_the_check_without_their_data(name):
    # Their example_recipe holds a placeholder path and example_batch reads no files.
    report = vaezoo.check_plugin(name, ["latent.dim=4"], batch_size=3)
    assert report.distribution == f"vaezoo-{name}" and report.latent_dim == 4
    assert report.batch["x"].startswith("[3,") and math.isfinite(report.loss) and report.encoder_parameters > 0



def test_plugins_table_says_each_status_in_words(installed):
    lines = cli("plugins").output.splitlines()
    rows = {line.split()[0]: line for line in lines[2:] if not line.startswith(" ")}
    assert rows["good"].split()[1] == "ok" and "vaezoo-test-plugins 1.2.3" in rows["good"]
    assert "incompatible API version" in rows["future"] and "failed to import" in rows["broken"]
    assert "not a modality" in rows["notamodality"]
    broken_at = lines.index(rows["broken"])
    assert lines[broken_at + 1].strip() == "ImportError: libsndfile.so.9: cannot open shared object file"
    result = cli("plugins", "check", "broken")
    assert result.exit_code == 2
    assert result.output == ("error: modality 'broken' cannot be used (broken): "
                             "ImportError: libsndfile.so.9: cannot open shared object file\n")
