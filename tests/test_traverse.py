"""Latent traversals (vaezoo.analysis.traversal) and `vaezoo traverse` on the tiny modality."""

import re

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from vaezoo.analysis.traversal import latent_traversal, parse_dims, writer_of
from vaezoo.cli import main
from vaezoo.core.errors import InputError
from vaezoo.plugin.protocol import Modality
from vaezoo.train.runs import open_run

from tiny_modality import TinyVectors


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_csv(path):
    return torch.tensor([[float(v) for v in line.split(",")] for line in path.read_text().split()])


def test_each_row_sweeps_one_dimension_around_the_base(labelled_run):
    vae = open_run(labelled_run).vae
    z, px = latent_traversal(vae, steps=5, span=2.0, dims=[1, 0])
    assert z.shape == (10, 2) and px.mean.shape == (10, 6)
    assert torch.equal(z[:5, 1], torch.linspace(-2, 2, 5)) and (z[:5, 0] == 0).all()
    assert torch.equal(z[5:, 0], torch.linspace(-2, 2, 5)) and (z[5:, 1] == 0).all()
    base = torch.tensor([0.5, -1.0])
    z, _ = latent_traversal(vae, base, steps=3, span=1.0, dims=[0])
    assert z.tolist() == [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]]            # the others stay at the base
    z, _ = latent_traversal(vae, base, steps=3, span=1.0, dims=[0], relative=True)
    assert z.tolist() == [[-0.5, -1.0], [0.5, -1.0], [1.5, -1.0]]            # base +- span
    with pytest.raises(ValueError, match="out of range"):
        latent_traversal(vae, dims=[2])


def test_parse_dims():
    assert parse_dims(None, 4) == parse_dims("all", 4) == [0, 1, 2, 3]
    assert parse_dims("3, 0-1", 4) == [3, 0, 1]
    for text, message in [("4", "dimension 4 is out of range; the latent has 4 (0 ... 3)"), ("1-x", "'1-x' is not"),
                          ("3-1", "runs backwards"), ("2,7-8", "dimensions 7, 8 are out of range")]:
        with pytest.raises(InputError, match=re.escape(message)):
            parse_dims(text, 4)


def test_traverse_writes_rows_with_the_modalitys_writer(labelled_run, tmp_path):
    # The tiny modality has no interpolation writer: its samples writer (CSV) gets the rows in order.
    result = cli("traverse", labelled_run, "--steps", 4, "--span", 2, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "rows: z0, z1 (values -2 ... 2, 4 steps, from zeros)" in result.output
    rows = read_csv(tmp_path / "traversal-zeros.csv")
    run = open_run(labelled_run)
    _, px = latent_traversal(run.vae, steps=4, span=2.0)
    torch.testing.assert_close(rows, px.mean, atol=1e-5, rtol=0)
    assert not torch.allclose(rows[0], rows[3])                              # the sweep changes the output

    # From an example of a split: the base is its posterior mean.
    result = cli("traverse", labelled_run, "--from", "test:3", "--dims", "1", "--steps", 3, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    batch = run.modality.collate([run.modality.dataset("test")[3]])
    base = run.vae.encode(batch).mean[0].detach()
    _, px = latent_traversal(run.vae, base, steps=3, dims=[1])
    torch.testing.assert_close(read_csv(tmp_path / "traversal-test-3.csv"), px.mean, atol=1e-5, rtol=0)

    # From an input the modality reads.
    result = cli("traverse", labelled_run, "--from", "1,2,3,4,5,6", "--steps", 2, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert read_csv(tmp_path / "traversal-input.csv").shape == (4, 6)


def test_traverse_mistakes_are_one_line(labelled_run, tmp_path):
    for args, message in [(["--dims", "5"], "--dims 5: dimension 5 is out of range"),
                          (["--from", "test:999"], "--from test:999: the test split has 32 examples"),
                          (["--from", "1,x"], "expected 6 comma-separated numbers"),
                          (["--steps", "1"], "Invalid value for '--steps'")]:
        result = cli("traverse", labelled_run, *args, "--out", tmp_path)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not list(tmp_path.iterdir())


class Plain(TinyVectors):
    """No writers of its own."""

    write_samples = Modality.write_samples                  # the protocol's default


class Lines(TinyVectors):
    def write_interpolations(self, px, steps, stem):
        return ["interpolations", steps]


def test_the_writer_is_the_interpolation_writer_then_the_samples_writer(tmp_path, tiny_recipe):
    from vaezoo.plugin.recipes import load_recipe

    recipe = load_recipe(tiny_recipe)
    px = type("P", (), {"mean": torch.zeros(6, 6)})()
    assert writer_of(Lines(recipe))(px, 3, tmp_path / "a") == ["interpolations", 3]
    assert writer_of(TinyVectors(recipe))(px, 3, tmp_path / "b") == [tmp_path / "b.csv"]
    (path,) = writer_of(Plain(recipe))(px, 3, tmp_path / "c")
    assert path.suffix == ".safetensors" and load_file(path)["mean"].shape == (6, 6)
