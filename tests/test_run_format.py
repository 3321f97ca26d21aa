"""Runs load across versions: tests/fixtures/run-format-1 is a run written in run format 1 (a
conditional run of the tiny modality, committed as it was written). Every later vaezoo must
keep opening, sampling, evaluating and encoding it to the figures in
tests/fixtures/run-format-1-expected (written by the vaezoo that wrote the run), through a
migration step when the format changes. A run of a newer format is refused in one line."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vaezoo.cli import main
from vaezoo.core.errors import RunDirError
from vaezoo.train import formats
from vaezoo.train.checkpoints import load_weights
from vaezoo.train.runs import open_run

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUN = FIXTURES / "run-format-1"
EXPECTED = FIXTURES / "run-format-1-expected"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def rows(path: Path) -> torch.Tensor:
    return torch.tensor([[float(v) for v in line.split(",")] for line in path.read_text().split()])


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_committed_run_still_samples_evaluates_and_encodes_as_when_it_was_written(tmp_path):
    before = digest(RUN)
    result = cli("sample", RUN, "-n", "3", "--seed", "5", "--out", tmp_path / "samples")
    assert result.exit_code == 0, result.output
    expected = sorted(EXPECTED.glob("samples-*.csv"))
    assert [p.name for p in expected] == sorted(p.name for p in (tmp_path / "samples").iterdir())
    for path in expected:
        assert torch.allclose(rows(tmp_path / "samples" / path.name), rows(path), atol=1e-4), path.name
    result = cli("eval", RUN, "-k", "20", "--json", tmp_path / "eval.json", "--no-progress")
    assert result.exit_code == 0, result.output
    got, want = (json.loads(p.read_text()) for p in (tmp_path / "eval.json", EXPECTED / "eval.json"))
    for key in ("elbo", "iw_nll", "kl", "reconstruction", "active_units", "n_examples"):
        assert got[key] == pytest.approx(want[key], abs=1e-4), key
    assert got["condition"] == want["condition"]
    result = cli("encode", RUN, "--max-examples", "8", "--out", tmp_path / "latents.safetensors", "--no-progress")
    assert result.exit_code == 0, result.output
    got, want = (load_file(str(p)) for p in (tmp_path / "latents.safetensors", EXPECTED / "latents.safetensors"))
    assert got.keys() == want.keys() and all(torch.allclose(got[k].float(), want[k].float(), atol=1e-5) for k in got)
    assert digest(RUN) == before          # reading a run never writes into it


def test_weights_record_the_run_format():
    run = open_run(RUN, device="cpu")
    assert run.metadata["run_format"] == "1" and formats.RUN_FORMAT >= 1


def rewrite_metadata(run: Path, change) -> None:
    for path in [run / "best.safetensors", *run.glob("checkpoints/*/model.safetensors")]:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata())
        save_file(load_file(str(path)), str(path), metadata=change(metadata))


def test_a_run_of_a_newer_format_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    rewrite_metadata(run, lambda m: {**m, "run_format": "99", "vaezoo_version": "9.0.0"})
    before = digest(run)
    for args in (["sample", run, "--out", tmp_path / "out"], ["eval", run], ["train", "--resume", run]):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines[-1:]) == 1 and "written in run format 99 by vaezoo 9.0.0" in lines[-1], result.output
        assert f"reads run formats up to {formats.RUN_FORMAT}: upgrade vaezoo" in lines[-1]
    assert digest(run) == before and not (tmp_path / "out").exists()


def test_weights_without_a_format_number_are_format_1(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    rewrite_metadata(run, lambda m: {k: v for k, v in m.items() if k != "run_format"})
    result = cli("sample", run, "-n", "3", "--seed", "5", "--condition", "2", "--out", tmp_path / "samples")
    assert result.exit_code == 0, result.output
    name = "samples-t1-seed5-class2.csv"
    assert torch.allclose(rows(tmp_path / "samples" / name), rows(EXPECTED / name), atol=1e-4)


def test_an_older_format_goes_through_its_migration(tmp_path, monkeypatch):
    """Pretend the format moved to 2 by renaming a tensor: format-1 files load through the step."""
    run = open_run(RUN, device="cpu")
    old = load_file(str(RUN / "best.safetensors"))
    monkeypatch.setattr(formats, "RUN_FORMAT", 2)
    renamed = {("decoder.log_scale_v2" if k == "decoder.log_scale" else k): v for k, v in old.items()}
    path = tmp_path / "w.safetensors"
    save_file(old, str(path), metadata={"run_format": "1"})

    class Renamed(torch.nn.Module):     # the "format 2" model: one tensor under its new name
        def __init__(self):
            super().__init__()
            for name, value in renamed.items():
                self.register_buffer(name.replace(".", "__"), torch.zeros_like(value))

    model = Renamed()
    monkeypatch.setattr(formats, "MIGRATIONS", {1: lambda state: {
        ("decoder.log_scale_v2" if k == "decoder.log_scale" else k).replace(".", "__"): v for k, v in state.items()}})
    load_weights(model, path)
    assert torch.equal(model.decoder__log_scale_v2, old["decoder.log_scale"])
    monkeypatch.setattr(formats, "MIGRATIONS", {})
    with pytest.raises(RunDirError, match="no migration from run format 1 to 2"):
        load_weights(model, path)
    assert run.vae is not None
