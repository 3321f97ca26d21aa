"""`vaezoo export`: TorchScript files that run with torch alone, checked in a fresh interpreter
in which `import vaezoo` fails, against the run's Python model."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from vaezoo.cli import main
from vaezoo.train.runs import open_run

from tiny_modality import TINY_RECIPE

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run-format-1"   # a conditional tiny run

# Runs in a fresh interpreter: vaezoo (and every plugin) cannot be imported there.
NO_VAEZOO = """
import sys
for name in ("vaezoo", "vaezoo_image", "vaezoo_text", "vaezoo_audio", "vaezoo_tabular", "tiny_modality"):
    sys.modules[name] = None
try:
    import vaezoo
except ImportError:
    pass
else:
    raise SystemExit("vaezoo was importable")
import torch
from safetensors.torch import load_file, save_file
folder, inputs, outputs = sys.argv[1:4]
given = load_file(inputs)
out = {}
for part in ("decoder", "encoder"):
    try:
        module = torch.jit.load(f"{folder}/{part}.pt").eval()
    except (FileNotFoundError, ValueError, RuntimeError):
        continue
    args = [given[f"{part}.{name}"] for name in ("a", "b") if f"{part}.{name}" in given]
    if not args:
        continue
    with torch.no_grad():
        result = module(*args)
    for i, t in enumerate(result if isinstance(result, tuple) else (result,)):
        out[f"{part}.{i}"] = t.contiguous()
save_file(out, outputs)
print("ok", sorted(out))
"""


def run_without_vaezoo(folder: Path, inputs: dict, tmp_path: Path) -> dict:
    save_file(inputs, str(tmp_path / "inputs.safetensors"))
    script = tmp_path / "no_vaezoo.py"
    script.write_text(NO_VAEZOO)
    done = subprocess.run([sys.executable, "-I", str(script), str(folder), str(tmp_path / "inputs.safetensors"),
                           str(tmp_path / "outputs.safetensors")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return load_file(str(tmp_path / "outputs.safetensors"))


def export(run: Path, out: Path, *args):
    return CliRunner().invoke(main, ["export", str(run), "--out", str(out), *args])


def test_a_conditional_run_exports_both_parts_that_match_it_without_vaezoo(tmp_path):
    result = export(FIXTURE, tmp_path / "export", "--part", "all")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["parts"]["decoder"]["inputs"][1]["classes"] == ["--", "-+", "+-", "++"]
    assert info["run_format"] == 1 and info["latent_dim"] == 2
    run = open_run(FIXTURE, device="cpu")
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(7, 2, generator=g), torch.randint(0, 4, (7,), generator=g)
    x = torch.randn(3, 6, generator=g)
    cx = torch.tensor([0, 3, 1])
    got = run_without_vaezoo(tmp_path / "export", {"decoder.a": z, "decoder.b": c, "encoder.a": x, "encoder.b": cx},
                             tmp_path)
    with torch.no_grad():
        want_mean = run.vae.decode(z, c).mean
        q = run.vae.encode({"x": x, "label": cx})
    assert (got["decoder.0"] - want_mean).abs().max() <= 1e-4
    assert (got["encoder.0"] - q.mean).abs().max() <= 1e-4 and (got["encoder.1"] - q.logvar).abs().max() <= 1e-4
    # and on test examples, as the encoder sees them
    test = run.modality.dataset("test").tensors
    got = run_without_vaezoo(tmp_path / "export", {"encoder.a": test[0][:16], "encoder.b": test[1][:16]}, tmp_path)
    with torch.no_grad():
        q = run.vae.encode({"x": test[0][:16], "label": test[1][:16]})
    assert (got["encoder.0"] - q.mean).abs().max() <= 1e-4


def test_a_plain_run_exports_its_decoder_with_any_batch_size(tmp_path):
    (tmp_path / "r.toml").write_text(TINY_RECIPE)
    assert CliRunner().invoke(main, ["train", str(tmp_path / "r.toml"), "--run-dir", str(tmp_path / "run"),
                                     "--no-progress"]).exit_code == 0
    result = export(tmp_path / "run", tmp_path / "export")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["decoder.pt", "export.json"]
    run = open_run(tmp_path / "run", device="cpu")
    for n in (1, 64):
        z = torch.randn(n, 2, generator=torch.Generator().manual_seed(n))
        got = run_without_vaezoo(tmp_path / "export", {"decoder.a": z}, tmp_path)
        with torch.no_grad():
            assert (got["decoder.0"] - run.vae.decode(z).mean).abs().max() <= 1e-4


def test_a_part_that_cannot_be_exported_is_one_line_exit_2_and_writes_nothing(tmp_path):
    (tmp_path / "r.toml").write_text(TINY_RECIPE + '\n[posterior]\nkind = "iaf"\n')
    assert CliRunner().invoke(main, ["train", str(tmp_path / "r.toml"), "--run-dir", str(tmp_path / "run"),
                                     "--no-progress"]).exit_code == 0
    result = export(tmp_path / "run", tmp_path / "out", "--part", "all")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == ("error: encoder: the posterior is an IAF flow; an exported "
                                                      "encoder would give its base Gaussian only, not q(z|x)")
    assert not (tmp_path / "out").exists()         # the decoder, which could be exported, is not written either
    assert export(tmp_path / "run", tmp_path / "out").exit_code == 0    # the decoder alone is fine


def test_weights_that_do_not_fit_the_recipe_are_one_line(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    text = (run / "recipe.toml").read_text().replace('kind = "diagonal"', 'kind = "iaf"')
    (run / "recipe.toml").write_text(text)
    result = export(run, tmp_path / "out", "--set", "objective.free_bits=0")
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert "weights do not fit the model built from recipe.toml (missing: flow." in last, last


@pytest.mark.parametrize("bad, message", [
    (["--part", "nope"], "Invalid value for '--part'"),
    (["--format", "pickle"], "Invalid value for '--format'"),
])
def test_bad_options_exit_2(tmp_path, bad, message):
    result = export(FIXTURE, tmp_path / "out", *bad)
    assert result.exit_code == 2 and message in result.output


ONNX_WITHOUT_VAEZOO = """
import sys
for name in ("vaezoo", "tiny_modality", "torch"):
    sys.modules[name] = None           # ONNX Runtime alone: neither vaezoo nor torch
import onnxruntime
from safetensors.numpy import load_file, save_file
folder, inputs, outputs = sys.argv[1:4]
given = load_file(inputs)
out = {}
for part, names in (("decoder", ["z", "c"]), ("encoder", ["x", "c"])):
    session = onnxruntime.InferenceSession(f"{folder}/{part}.onnx", providers=["CPUExecutionProvider"])
    feed = {name: given[f"{part}.{name}"] for name in names}
    for i, array in enumerate(session.run(None, feed)):
        out[f"{part}.{i}"] = array
save_file(out, outputs)
"""


def test_onnx_files_match_the_model_in_onnx_runtime_without_vaezoo_or_torch(tmp_path):
    result = export(FIXTURE, tmp_path / "export", "--format", "onnx", "--part", "all")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["decoder.onnx", "encoder.onnx", "export.json"]
    assert json.loads((tmp_path / "export" / "export.json").read_text())["format"] == "onnx"
    run = open_run(FIXTURE, device="cpu")
    g = torch.Generator().manual_seed(3)
    z, c = torch.randn(64, 2, generator=g), torch.randint(0, 4, (64,), generator=g)
    x, cx = torch.randn(1, 6, generator=g), torch.tensor([2])        # batch 64 and batch 1
    save_file({"decoder.z": z, "decoder.c": c, "encoder.x": x, "encoder.c": cx}, str(tmp_path / "in.safetensors"))
    script = tmp_path / "onnx_only.py"
    script.write_text(ONNX_WITHOUT_VAEZOO)
    done = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "export"), str(tmp_path / "in.safetensors"),
                           str(tmp_path / "out.safetensors")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = load_file(str(tmp_path / "out.safetensors"))
    with torch.no_grad():
        q = run.vae.encode({"x": x, "label": cx})
        assert (got["decoder.0"] - run.vae.decode(z, c).mean).abs().max() <= 1e-4
        assert (got["encoder.0"] - q.mean).abs().max() <= 1e-4 and (got["encoder.1"] - q.logvar).abs().max() <= 1e-4


def test_onnx_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = export(FIXTURE, tmp_path / "out", "--format", "onnx")
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert result.output.strip().splitlines()[-1] == ("error: --format onnx needs the onnx and onnxruntime packages: "
                                                      "pip install 'vaezoo[export]'")


def test_an_output_part_needs_a_modality_that_has_one(tmp_path):
    result = export(FIXTURE, tmp_path / "out", "--part", "output")
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert "has no output module past its decoded mean" in result.output.strip().splitlines()[-1]


def test_a_fixed_batch_size_is_recorded_and_the_onnx_file_takes_only_it(tmp_path):
    import onnxruntime

    result = export(FIXTURE, tmp_path / "export", "--format", "onnx", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["parts"]["decoder"]["batch"] == 3
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [d.shape for d in session.get_inputs()] == [[3, 2], [3]]
    dynamic = export(FIXTURE, tmp_path / "dynamic", "--format", "onnx")
    assert dynamic.exit_code == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "dynamic" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [d.shape[0] for d in session.get_inputs()] == ["N", "N"]
