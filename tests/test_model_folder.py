"""`vaezoo export --format folder`: a model folder that samples, evaluates and opens like a run,
with the plugin's fitted state, the eval table, samples and a model card."""

import hashlib
import json
from pathlib import Path

import torch
from click.testing import CliRunner

import vaezoo
from vaezoo.cli import main

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run-format-1"   # a conditional tiny run


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_model_folder_samples_evaluates_and_opens_like_its_run(tmp_path):
    folder = tmp_path / "shared"
    result = cli("export", FIXTURE, "--format", "folder", "--out", folder)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "best.safetensors", "eval.json", "model-folder.json", "recipe.toml", "samples"]
    info = json.loads((folder / "model-folder.json").read_text())
    assert info["kind"] == "vaezoo model folder" and info["run_format"] == 1 and info["weights"] == "best"
    card = (folder / "README.md").read_text()
    for heading in ("# run-format-1: a vaezoo tiny_modality:LabelledTiny VAE", "## Data", "## Figures", "## Samples",
                    "## How to load it", "## Recipe", "conditional on 4 classes", "| iw_nll |"):
        assert heading in card, heading
    # the folder and the run give the same samples and the same figures
    for source, out in ((FIXTURE, tmp_path / "a"), (folder, tmp_path / "b")):
        assert cli("sample", source, "-n", "4", "--condition", "1", "--out", out).exit_code == 0
        assert cli("eval", source, "-k", "10", "--json", out / "eval.json", "--no-progress").exit_code == 0
    assert (tmp_path / "a" / "samples-t1-seed0-class1.csv").read_text() == \
        (tmp_path / "b" / "samples-t1-seed0-class1.csv").read_text()
    a, b = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("a", "b"))
    assert a["iw_nll"] == b["iw_nll"] and a["elbo"] == b["elbo"]
    run, shared = vaezoo.open_run(FIXTURE, device="cpu"), vaezoo.open_run(folder, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(run.vae.state_dict().values(), shared.vae.state_dict().values()))


def test_a_folder_is_written_whole_into_a_new_or_empty_folder_only(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    before = digest(taken)
    result = cli("export", FIXTURE, "--format", "folder", "--out", taken)
    assert result.exit_code == 2 and "exists and is not empty" in result.output.strip().splitlines()[-1]
    assert digest(taken) == before and not list(tmp_path.glob(".*partial"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("export", FIXTURE, "--format", "folder", "--out", empty).exit_code == 0
    assert (empty / "best.safetensors").exists()


def test_a_folder_leaves_out_a_large_request_s_every_example_files(tmp_path):
    """`sample -n 20000` into the run's samples/ streams every sample into STEM-all.*: a shared
    folder keeps the previews only."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    (run / "samples" / "big-all.safetensors").write_bytes(b"x" * 1000)
    (run / "samples" / "big-all.txt").write_text("every line\n")
    (run / "samples" / "big.csv").write_text("a preview\n")
    assert cli("export", run, "--format", "folder", "--out", tmp_path / "shared").exit_code == 0
    shared = sorted(p.name for p in (tmp_path / "shared" / "samples").iterdir())
    assert "big.csv" in shared and not [name for name in shared if "-all." in name]
    assert "big-all" not in (tmp_path / "shared" / "README.md").read_text()
