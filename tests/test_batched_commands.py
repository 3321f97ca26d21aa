"""sample, reconstruct, encode and score in batches (--batch-size): the same files whatever the
batch size, every example in STEM-all.safetensors beside a preview, decoder calls no larger than
a batch, and refusals that leave every file as it was. The tabular and text plugins' own tests
(test_tabular_batched.py, test_text_batched.py) run the same commands on their modalities."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import tiny_modality
from tiny_modality import TINY_RECIPE
from vaezoo.analysis.batched import DRAW_BLOCK, LatentStream
from vaezoo.analysis.latents import encode_split
from vaezoo.cli import main
from vaezoo.core.tensor_stream import TensorStream
from vaezoo.train.runs import open_run
from vaezoo.train.samples import write_decoded

CONDITIONAL = TINY_RECIPE.replace("TinyVectors", "LabelledTiny") + "\n[condition]\nenabled = true\nembedding_dim = 3\n"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def parts(path: Path) -> tuple[dict, bytes]:
    """A safetensors file's header (parsed: save_file writes the metadata in any order) and data."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def same_tensors(a: Path, b: Path, exact: tuple[str, ...] = ()) -> None:
    """The same tensors in both files: those named in ``exact`` bit for bit, the others up to the
    rounding of matrix kernels, which PyTorch picks by the number of rows."""
    first, second = load_file(str(a)), load_file(str(b))
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        if name in exact:
            assert torch.equal(tensor, second[name]), name
        else:
            torch.testing.assert_close(tensor, second[name], rtol=0, atol=1e-6)


def csv_rows(path: Path) -> torch.Tensor:
    return torch.tensor([[float(v) for v in line.split(",")] for line in path.read_text().split()])


@pytest.fixture
def decoder_calls(monkeypatch) -> list[int]:
    """The rows of every call of the tiny modality's decoder, in order."""
    calls: list[int] = []
    forward = tiny_modality.Decoder.forward

    def recording(self, z):
        calls.append(len(z))
        return forward(self, z)

    monkeypatch.setattr(tiny_modality.Decoder, "forward", recording)
    return calls


# -- the pieces -------------------------------------------------------------------------------


def test_a_streamed_file_is_the_file_save_file_writes(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"x": torch.randn(10, 2, 3, generator=g), "z": torch.randn(10, 4, generator=g).double(),
               "label": torch.arange(10), "c": torch.arange(10, dtype=torch.int32),
               "h": torch.randn(10, generator=g).to(torch.bfloat16), "m": torch.rand(10, generator=g) > 0.5}
    save_file(tensors, str(tmp_path / "whole.safetensors"), metadata={"run": "r", "a": "1"})
    with TensorStream(tmp_path / "streamed.safetensors", {"run": "r", "a": "1"}) as out:
        for a, b in [(0, 3), (3, 4), (4, 10)]:
            out.append({name: t[a:b] for name, t in tensors.items()})
        assert out.rows("x") == 10 and out.rows("nothing") == 0
        path = out.close()
    assert parts(path) == parts(tmp_path / "whole.safetensors")   # the same header and the same bytes of data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.safetensors", "whole.safetensors"]


def test_a_stream_refuses_rows_of_another_shape_and_an_unclosed_one_leaves_nothing(tmp_path):
    with TensorStream(tmp_path / "out.safetensors") as out:
        out.append({"x": torch.zeros(2, 3)})
        with pytest.raises(ValueError, match=r"x: rows of torch.float32 \[4\] do not follow rows of torch.float32 \[3\]"):
            out.append({"x": torch.zeros(2, 4)})
        with pytest.raises(ValueError, match="x: rows of torch.int64"):
            out.append({"x": torch.zeros(2, 3, dtype=torch.long)})
    assert list(tmp_path.iterdir()) == []   # no file, no spilled rows
    with TensorStream(tmp_path / "out.safetensors") as out:
        out.append({"x": torch.zeros(2, 3), "label": torch.ones(2, dtype=torch.long)})
        out.drop("label")
        out.append({"x": torch.ones(1, 3)})
        out.close()
    assert load_file(str(tmp_path / "out.safetensors")).keys() == {"x"}
    assert load_file(str(tmp_path / "out.safetensors"))["x"].tolist() == [[0.0] * 3] * 2 + [[1.0] * 3]


def test_latents_do_not_depend_on_how_they_are_taken():
    def stream(count):
        g = torch.Generator().manual_seed(5)
        return LatentStream(lambda rows: torch.randn(rows, 3, generator=g), count)

    count = 2 * DRAW_BLOCK + 10
    for size in (7, 64, DRAW_BLOCK + 1):
        s = stream(count)
        pieces = [s.take(min(size, count - a)) for a in range(0, count, size)]
        taken = torch.cat(pieces)
        if size == 7:
            first = taken
        assert taken.shape == (count, 3) and torch.equal(taken, first)
    # A request no larger than a block is one draw: the latents of earlier versions.
    s = stream(100)
    assert torch.equal(torch.cat([s.take(30), s.take(70)]), torch.randn(100, 3, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="6 latents asked for, 5 left of the request"):
        stream(5).take(6)


# -- sample -----------------------------------------------------------------------------------


def test_sample_writes_every_sample_beside_a_preview_whatever_the_batch_size(labelled_run, tmp_path, decoder_calls):
    written = {}
    for size in (7, 64):
        decoder_calls.clear()
        out = tmp_path / str(size)
        result = ok("sample", labelled_run, "-n", 150, "--preview", 5, "--batch-size", size, "--out", out, "--no-progress")
        assert result.stdout.splitlines() == [f"wrote {out / 'samples-t1-seed0.csv'}",
                                              f"wrote {out / 'samples-t1-seed0-all.safetensors'}"]
        # never more rows at once than a batch: the preview (5 rows), then 150 rows in batches
        assert max(decoder_calls) <= size and decoder_calls[0] == 5 and sum(decoder_calls[1:]) == 150
        written[size] = digest(out)
    assert written[7]["samples-t1-seed0.csv"] == written[64]["samples-t1-seed0.csv"]   # the preview, byte for byte
    same_tensors(tmp_path / "7" / "samples-t1-seed0-all.safetensors", tmp_path / "64" / "samples-t1-seed0-all.safetensors",
                 exact=("z",))
    tensors = load_file(str(tmp_path / "7" / "samples-t1-seed0-all.safetensors"))
    assert tensors.keys() == {"x", "z"} and tensors["x"].shape == (150, 6) and tensors["z"].shape == (150, 2)
    run = open_run(labelled_run)
    z = run.vae.prior.sample(150, generator=torch.Generator().manual_seed(0))   # 150 <= one block: one draw
    assert torch.equal(tensors["z"], z)
    torch.testing.assert_close(tensors["x"], run.vae.decode(z).mean, rtol=0, atol=1e-6)
    preview = csv_rows(tmp_path / "7" / "samples-t1-seed0.csv")   # the first 5 samples, nothing more
    torch.testing.assert_close(preview, tensors["x"][:5], rtol=0, atol=1e-5)
    with safe_open(str(tmp_path / "7" / "samples-t1-seed0-all.safetensors"), "pt") as f:
        assert f.metadata() == {"run": str(labelled_run), "sampler": "prior", "temperature": "1", "seed": "0"}


def test_a_request_within_the_preview_writes_the_files_it_always_wrote(labelled_run, tmp_path, decoder_calls):
    ok("sample", labelled_run, "-n", 20, "--batch-size", 3, "--out", tmp_path / "now", "--no-progress")
    assert decoder_calls == [20]   # one piece, as before: the writer takes it whole
    run = open_run(labelled_run)
    torch.manual_seed(0)
    z = run.vae.prior.sample(20, generator=torch.Generator().manual_seed(0))
    write_decoded(run.vae, run.modality, z, tmp_path / "before" / "samples-t1-seed0")
    assert digest(tmp_path / "now") == digest(tmp_path / "before") and len(digest(tmp_path / "now")) == 1


def test_an_interrupted_request_leaves_only_the_preview(labelled_run, tmp_path, monkeypatch):
    forward = tiny_modality.Decoder.forward
    calls = []

    def failing(self, z):
        calls.append(len(z))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return forward(self, z)

    monkeypatch.setattr(tiny_modality.Decoder, "forward", failing)
    result = cli("sample", labelled_run, "-n", 100, "--preview", 5, "--batch-size", 10, "--out", tmp_path, "--no-progress")
    assert result.exit_code == 130
    assert [p.name for p in tmp_path.iterdir()] == ["samples-t1-seed0.csv"]   # no -all file, no temporaries


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditional")
    (root / "c.toml").write_text(CONDITIONAL)
    ok("train", root / "c.toml", "--run-dir", root / "run", "--no-progress")
    return root / "run"


def test_a_conditional_request_writes_every_sample_per_class(conditional_run, tmp_path):
    ok("sample", conditional_run, "-n", 12, "--preview", 2, "--batch-size", 5, "--condition", "++",
       "--condition", "1", "--out", tmp_path, "--no-progress")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "samples-t1-seed0-class1-all.safetensors", "samples-t1-seed0-class1.csv",
        "samples-t1-seed0-class3-all.safetensors", "samples-t1-seed0-class3.csv"]
    one, three = (load_file(str(tmp_path / f"samples-t1-seed0-class{c}-all.safetensors")) for c in (1, 3))
    assert one["condition"].tolist() == [1] * 12 and three["condition"].tolist() == [3] * 12
    assert torch.equal(one["z"], three["z"]) and not torch.allclose(one["x"], three["x"])
    run = open_run(conditional_run)
    torch.testing.assert_close(three["x"], run.vae.decode(three["z"], 3).mean, rtol=0, atol=1e-6)
    with safe_open(str(tmp_path / "samples-t1-seed0-class3-all.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["condition_names"]) == ["--", "-+", "+-", "++"]


# -- reconstruct, encode, score ----------------------------------------------------------------


def test_reconstruct_writes_every_row_beside_a_preview_whatever_the_batch_size(labelled_run, tmp_path, decoder_calls):
    written = {}
    for size in (7, 64):
        decoder_calls.clear()
        out = tmp_path / str(size)
        ok("reconstruct", labelled_run, "-n", 50, "--preview", 4, "--batch-size", size, "--out", out, "--no-progress")
        assert max(decoder_calls) <= size and decoder_calls[0] == 4 and sum(decoder_calls[1:]) == 50
        written[size] = digest(out)
    assert set(written[7]) == {"reconstructions.safetensors", "reconstructions-all.safetensors"}
    assert written[7]["reconstructions.safetensors"] == written[64]["reconstructions.safetensors"]
    same_tensors(tmp_path / "7" / "reconstructions-all.safetensors", tmp_path / "64" / "reconstructions-all.safetensors")
    preview = load_file(str(tmp_path / "7" / "reconstructions.safetensors"))   # the modality's default writer
    every = load_file(str(tmp_path / "7" / "reconstructions-all.safetensors"))
    assert preview["reconstruction"].shape == (4, 6) and every["x"].shape == (50, 6) and every["z"].shape == (50, 2)
    run = open_run(labelled_run)
    test = run.modality.dataset("test").tensors[0]   # 32 examples: -n 50 cycles through them, as before
    index = torch.arange(50) % len(test)
    z, px = run.vae.reconstruct({"x": test[index]})
    torch.testing.assert_close(every["z"], z, rtol=0, atol=1e-6)
    torch.testing.assert_close(every["x"], px.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(preview["reconstruction"], every["x"][:4], rtol=0, atol=1e-6)


def test_encode_streams_the_file_it_wrote_whole_before(labelled_run, tmp_path):
    ok("encode", labelled_run, "--out", tmp_path / "default.safetensors", "--no-progress")
    ok("encode", labelled_run, "--batch-size", 7, "--out", tmp_path / "seven.safetensors", "--no-progress")
    run = open_run(labelled_run)
    latents = encode_split(run, "test")   # what the command held in memory and wrote with save_file
    save_file({"mean": latents.mean, "logvar": latents.logvar, "label": latents.label},
              str(tmp_path / "before.safetensors"), metadata={"run": str(labelled_run), "split": "test"})
    assert parts(tmp_path / "default.safetensors") == parts(tmp_path / "before.safetensors")
    assert load_file(str(tmp_path / "seven.safetensors"))["mean"].shape == (32, 2)
    same_tensors(tmp_path / "seven.safetensors", tmp_path / "before.safetensors", exact=("label",))
    given = ok("encode", labelled_run, "1,2,3,4,5,6", "6,5,4,3,2,1", "0,0,0,0,0,1", "--batch-size", 2,
               "--out", tmp_path / "inputs.safetensors")
    assert f"wrote {tmp_path / 'inputs.safetensors'} (3 x 2)" in given.stdout
    assert load_file(str(tmp_path / "inputs.safetensors"))["mean"].shape == (3, 2)


def test_score_batch_size_sets_the_rows_decoded_at_once(labelled_run, tmp_path, decoder_calls):
    ok("score", labelled_run, "--out", tmp_path / "default.csv", "--no-progress")
    ok("score", labelled_run, "--batch-size", 100, "--out", tmp_path / "hundred.csv", "--no-progress")
    # the recipe's [eval] batch_size (100) is the default: the same draws, the same scores
    assert (tmp_path / "default.csv").read_text() == (tmp_path / "hundred.csv").read_text()
    decoder_calls.clear()
    ok("score", labelled_run, "-k", 4, "--batch-size", 5, "--out", tmp_path / "five.csv", "--no-progress")
    assert max(decoder_calls) <= 5 * 4 and sum(decoder_calls) == 32 * 4   # k = 4 samples of at most 5 rows
    rows = (tmp_path / "five.csv").read_text().splitlines()
    assert rows[0] == "input,score" and [r.split(",")[0] for r in rows[1:]] == [f"test:{i}" for i in range(32)]


@pytest.mark.parametrize("command, extra", [("sample", ["-n", "100"]), ("reconstruct", ["-n", "100"]),
                                            ("encode", []), ("score", [])])
def test_a_bad_batch_size_or_preview_is_refused_and_writes_nothing(labelled_run, tmp_path, command, extra):
    before = digest(labelled_run)
    out = tmp_path / ("out.csv" if command == "score" else "out.safetensors" if command == "encode" else "out")
    bad = [("--batch-size", value) for value in ("0", "-3", "1.5", "many")]
    if command in ("sample", "reconstruct"):
        bad += [("--preview", "0")]
    for option, value in bad:
        result = cli(command, labelled_run, *extra, option, value, "--out", out)
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert errors == [errors[0]] and f"Invalid value for '{option}'" in errors[0] and value in errors[0]
        assert "Traceback" not in result.output
    assert not out.exists() and digest(labelled_run) == before
