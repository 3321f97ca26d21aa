"""sample, reconstruct and encode of a table in batches (--batch-size): the same files whatever the
batch size, a preview CSV of the first rows, and every row in STEM-all.safetensors."""

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import vaezoo
from vaezoo.cli import main
from vaezoo_tabular.table import read_table

from test_tabular_cli import train_table, write_csv


def ok(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained on an 80-row table with missing cells, and the table."""
    root = tmp_path_factory.mktemp("tabular-batched")
    table = write_csv(root / "table.csv")
    return train_table(root, {"path": "table.csv", "categorical": ["grade"], "drop": ["id"]}), table


def same(a, b, exact=()):
    """The same tensors in both files (``exact`` bit for bit, others up to the rounding of matrix kernels)."""
    first, second = load_file(str(a)), load_file(str(b))
    assert first.keys() == second.keys()
    for name in first:
        if name in exact:
            assert torch.equal(first[name], second[name]), name
        else:
            torch.testing.assert_close(first[name], second[name], rtol=0, atol=1e-6)


def test_sample_a_table_in_batches(trained, tmp_path):
    run_dir, _ = trained
    for size in (7, 64):
        ok("sample", run_dir, "-n", 300, "--preview", 10, "--batch-size", size, "--out", tmp_path / str(size), "--no-progress")
    # The preview: the first 10 synthetic rows, the same cells (drawn from the seeded RNG) at both batch sizes.
    previews = [(tmp_path / str(size) / "samples-t1-seed0.csv").read_text() for size in (7, 64)]
    assert previews[0] == previews[1]
    assert len(read_table(tmp_path / "7" / "samples-t1-seed0.csv").rows) == 10
    same(tmp_path / "7" / "samples-t1-seed0-all.safetensors", tmp_path / "64" / "samples-t1-seed0-all.safetensors",
         exact=("z",))
    every = load_file(str(tmp_path / "7" / "samples-t1-seed0-all.safetensors"))
    run = vaezoo.open_run(run_dir, device="cpu")
    assert every.keys() == {"x", "z"} and every["z"].shape == (300, 2)
    torch.testing.assert_close(every["x"], run.vae.decode(every["z"]).mean, rtol=0, atol=1e-6)


def test_reconstruct_a_table_larger_than_the_preview(trained, tmp_path):
    run_dir, table = trained
    for size in (7, 64):
        ok("reconstruct", run_dir, table, "--preview", 20, "--batch-size", size, "--out", tmp_path / str(size),
           "--no-progress")
    preview, source = read_table(tmp_path / "7" / "reconstructions.csv"), read_table(table)
    # the first 20 rows imputed: their observed cells as they were, the missing ones filled
    assert len(preview.rows) == 20 and preview.columns == source.columns
    assert all(b == a if a is not None else b is not None
               for old, new in zip(source.rows, preview.rows) for a, b in zip(old[1:], new[1:]))
    assert (tmp_path / "7" / "reconstructions.csv").read_text() == (tmp_path / "64" / "reconstructions.csv").read_text()
    same(tmp_path / "7" / "reconstructions-all.safetensors", tmp_path / "64" / "reconstructions-all.safetensors")
    every = load_file(str(tmp_path / "7" / "reconstructions-all.safetensors"))
    run = vaezoo.open_run(run_dir, device="cpu")
    z, px = run.vae.reconstruct(run.modality.load_inputs([str(table)]))   # the whole table at once
    assert every["x"].shape[0] == every["z"].shape[0] == 80
    torch.testing.assert_close(every["z"], z, rtol=0, atol=1e-6)
    torch.testing.assert_close(every["x"], px.mean, rtol=0, atol=1e-6)
    # Within the default preview (1000 rows) the imputed table stays whole, as before: no -all file.
    ok("reconstruct", run_dir, table, "--batch-size", 7, "--out", tmp_path / "whole")
    assert [p.name for p in (tmp_path / "whole").iterdir()] == ["reconstructions.csv"]
    assert len(read_table(tmp_path / "whole" / "reconstructions.csv").rows) == 80


def test_encode_a_table_in_batches(trained, tmp_path):
    run_dir, table = trained
    ok("encode", run_dir, table, "--out", tmp_path / "default.safetensors", "--no-progress")
    ok("encode", run_dir, table, "--batch-size", 7, "--out", tmp_path / "seven.safetensors", "--no-progress")
    same(tmp_path / "default.safetensors", tmp_path / "seven.safetensors")
    assert load_file(str(tmp_path / "seven.safetensors"))["mean"].shape == (80, 2)
