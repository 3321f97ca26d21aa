"""Exporting a run's networks as TorchScript or ONNX, to run where vaezoo is not installed.

- decoder: ``z [N, D] -> the decoded mean`` (an image's pixel means, a standardised log-mel
  clip, a table's real values and most probable categories; for text, the token ids of greedy
  generation, from the plugin's scriptable ``export_decoder``, with tokenizer.json beside it);
  a conditional run's takes the class ids too, ``(z [N, D], c [N]) -> mean``.
- encoder: ``(the batch tensors it reads) -> (mean, logvar)`` of q(z|x): ``x`` for images and
  audio, ``(x, mask)`` for tables, ``(x, length)`` for text token ids (found by running the
  encoder once on a batch that notes what it reads); a conditional run's with the encoder
  reading the class takes the class ids last.
- output: ``z -> the modality's output`` (``Modality.output_module`` after the decoded mean):
  for audio the waveform, Griffin-Lim included, end to end.

Each part is traced (``torch.jit.trace``) in evaluation mode and checked before it is written:
its outputs at another batch size must equal the Python model's (max abs difference <=
``TOLERANCE``), so a decoder whose code fixes the batch size is refused, not exported wrong.
ONNX files (``--format onnx``, torch's TorchScript-based exporter, a dynamic batch axis) are
checked the same way in ONNX Runtime. ``export.json`` beside the files says what each takes
and returns, with the run's format,
versions and class names; the plugin's fitted state (tokenizer.json, statistics) is copied
beside. A part that cannot be exported (an IAF posterior's encoder, a token decoder without
``export_decoder``, a trace that depends on its batch) is refused with one line naming why.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaezoo.core.errors import InputError
from vaezoo.core.files import atomic_path, write_json
from vaezoo.core.version import __version__
from vaezoo.train.formats import RUN_FORMAT

TOLERANCE = 1e-4
PARTS = ("decoder", "encoder")


class DecoderMean(nn.Module):
    """z -> p(x|z).mean; with a condition, (z, c) -> p(x|z, c).mean."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            return self.vae.decoder(z).mean
        return self.vae.decode_embedded(z, self.vae.condition(c)).mean


class ScriptedDecoderMean(nn.Module):
    """z [, c] -> a plugin's scripted decoder (``Modality.export_decoder``) of z and the class embedding."""

    def __init__(self, vae, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.condition, self.scripted = vae.condition, scripted

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None or self.condition is None:
            return self.scripted(z)
        return self.scripted(torch.cat([z, self.condition(c).to(z.dtype)], dim=-1))


class DecoderOutput(nn.Module):
    """z [, c] -> the modality's output module applied to the decoded mean (audio: a waveform)."""

    def __init__(self, vae, head: nn.Module):
        super().__init__()
        self.decoded, self.head = DecoderMean(vae), head

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.decoded(z, c))


class EncoderGaussian(nn.Module):
    """The batch tensors the encoder reads (``keys``, in order) -> (mean, logvar) of q(z|x); with
    a condition the encoder reads, the class ids follow them."""

    def __init__(self, vae, keys: list[str]):
        super().__init__()
        self.vae, self.keys = vae, keys
        self.conditional = vae.condition is not None and vae.condition.to_encoder

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = dict(zip(self.keys, inputs))
        if self.conditional:
            batch["condition"] = self.vae.condition(inputs[len(self.keys)])
        out = self.vae.encoder(batch)
        return out[0], out[1]


class KeysRead(dict):
    """A batch that notes which of its keys the encoder reads (by item, ``get`` or ``in``)."""

    def __init__(self, batch: dict):
        super().__init__(batch)
        self.read: list[str] = []

    def _note(self, key) -> None:
        if key in self.keys() and key not in self.read:
            self.read.append(key)

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self._note(key)
        return super().__contains__(key)


@dataclass
class Exported:
    part: str
    module: torch.jit.ScriptModule
    inputs: list[dict]
    output: str
    max_abs_difference: float
    model: nn.Module                    # the Python wrapper (ONNX exports it)
    make_inputs: Any                    # (n, seed) -> example inputs
    outputs: tuple[str, ...] = ("mean",)
    suffix: str = ".pt"

    @property
    def file(self) -> str:
        return f"{self.part}{self.suffix}"


def _classes(vae, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vae.condition.classes, (n,), generator=torch.Generator().manual_seed(seed))


def _trace_and_check(module: nn.Module, make_inputs, part: str, batch: int,
                     reference: nn.Module | None = None) -> tuple[torch.jit.ScriptModule, float]:
    """Trace ``module`` on inputs of batch 2 and compare it with the Python module (``reference``,
    default ``module`` itself) at batch 5; with a fixed ``batch`` (> 0), trace and compare at it."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.14 calls TorchScript deprecated (it still loads everywhere torch does), and warns
        # that constants are baked in: the check below compares the trace with the model instead.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, make_inputs(batch or 2, 0), check_trace=False)
        inputs = make_inputs(batch or 5, 1)
        want = (reference or module)(*inputs)
        try:
            got = traced(*inputs)
        except RuntimeError as err:   # a size baked into the trace breaks at another batch size
            raise InputError(f"the traced {part} fails at another batch size ({str(err).strip().splitlines()[0]}): "
                             "its code depends on the batch it was traced with") from None
    want, got = (w if isinstance(w, tuple) else (w,) for w in (want, got))
    same_shapes = len(want) == len(got) and all(a.shape == b.shape for a, b in zip(want, got))
    difference = max(float((a.float() - b.float()).abs().max()) for a, b in zip(want, got)) if same_shapes else float("inf")
    if not difference <= TOLERANCE:
        raise InputError(f"the traced {part} differs from the model by {difference:.3g} at another batch size "
                         f"(allowed {TOLERANCE:g}): its code depends on the batch it was traced with")
    return traced, difference


def export_decoder(run, batch: int = 0) -> Exported:
    vae = run.vae
    if not run.modality.uses_latent:
        raise InputError("decoder: this model's decoder ignores z; there is nothing to export from z")
    conditional = vae.condition is not None

    def make(n: int, seed: int):
        z = torch.randn(n, vae.latent_dim, generator=torch.Generator().manual_seed(seed))
        return (z, _classes(vae, n, seed)) if conditional else (z,)

    scriptable = run.modality.export_decoder(vae.decoder)
    if scriptable is not None:   # a loop (text generation): scripted, then traced around, checked alike
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                scripted = torch.jit.script(scriptable.eval())
        except Exception as err:   # TorchScript's compiler errors come in many types: name the first line
            raise InputError(f"decoder: the {run.recipe.modality} plugin's export_decoder does not compile as "
                             f"TorchScript: {str(err).strip().splitlines()[0]}") from None
        model: nn.Module = ScriptedDecoderMean(vae, scripted).eval()
        traced, difference = _trace_and_check(model, make, "decoder", batch, reference=DecoderMean(vae).eval())
        output = "token ids [N, L] of greedy generation, each row ending in EOS (unless cut) then PAD"
    else:
        probe = _first_batch(run)
        if probe is not None and not torch.is_floating_point(probe["x"]):
            raise InputError(f"decoder: the {run.recipe.modality} decoder reads discrete tokens and its plugin "
                             "gives no scriptable decoder (Modality.export_decoder)")
        model = DecoderMean(vae).eval()
        traced, difference = _trace_and_check(model, make, "decoder", batch)
        output = "the decoded mean [N, ...] (the decoder's p(x|z).mean)"
    inputs = [{"name": "z", "shape": ["N", vae.latent_dim], "dtype": "float32"}]
    if conditional:
        inputs.append({"name": "c", "shape": ["N"], "dtype": "int64", "classes": vae.condition.names})
    return Exported("decoder", traced, inputs, output, difference, model, make)


def export_output(run, batch: int = 0) -> Exported:
    vae = run.vae
    head = run.modality.output_module()
    if head is None:
        raise InputError(f"output: the {run.recipe.modality} modality has no output module past its decoded mean "
                         "(Modality.output_module); export the decoder")
    conditional = vae.condition is not None

    def make(n: int, seed: int):
        z = torch.randn(n, vae.latent_dim, generator=torch.Generator().manual_seed(seed))
        return (z, _classes(vae, n, seed)) if conditional else (z,)

    model = DecoderOutput(vae, head.eval()).eval()
    with _one_thread():      # a module that splits its batch over threads is traced on one
        traced, difference = _trace_and_check(model, make, "output", batch)
    inputs = [{"name": "z", "shape": ["N", vae.latent_dim], "dtype": "float32"}]
    if conditional:
        inputs.append({"name": "c", "shape": ["N"], "dtype": "int64", "classes": vae.condition.names})
    return Exported("output", traced, inputs, "the modality's output of the decoded mean (audio: waveforms [N, L])",
                    difference, model, make, ("output",))


class _one_thread:
    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def _first_batch(run) -> dict | None:
    """Two examples of the eval split, or None when the run's data cannot be read."""
    from vaezoo.core.data import first_examples

    try:
        return first_examples(run.modality.dataset(run.recipe.eval.split), run.modality.collate, 2)
    except Exception:   # the data may be gone (a shared run); only the encoder needs it
        return None


def export_encoder(run, batch: int = 0) -> Exported:
    vae = run.vae
    if vae.flow is not None:
        raise InputError("encoder: the posterior is an IAF flow; an exported encoder would give its base Gaussian "
                         "only, not q(z|x)")
    example = _first_batch(run)
    if example is None:
        raise InputError(f"encoder: an example input is needed to trace it, and the {run.recipe.eval.split} split "
                         "cannot be read (is the run's data still there?)")
    conditional = vae.condition is not None and vae.condition.to_encoder
    # The tensors the encoder reads, found by running it once on a batch that notes them.
    probe = KeysRead({k: v for k, v in example.items() if isinstance(v, torch.Tensor)})
    if conditional:
        probe["condition"] = vae.condition(vae.conditions(example))
    with torch.no_grad():
        vae.encoder(probe)
    keys = [k for k in probe.read if k != "condition"]
    examples = {k: example[k] for k in keys}

    def make(n: int, seed: int):
        rows = [t[torch.arange(n) % len(t)].clone() for t in examples.values()]
        noise = torch.Generator().manual_seed(seed)
        rows = [r + 0.01 * torch.randn(r.shape, generator=noise) if torch.is_floating_point(r) else r for r in rows]
        return (*rows, _classes(vae, n, seed)) if conditional else tuple(rows)

    model = EncoderGaussian(vae, keys).eval()
    traced, difference = _trace_and_check(model, make, "encoder", batch)
    inputs = [{"name": k, "shape": ["N", *(["L"] if t.dim() > 1 and not torch.is_floating_point(t) else
                                           list(t.shape[1:]))], "dtype": str(t.dtype).replace("torch.", "")}
              for k, t in examples.items()]
    if conditional:
        inputs.append({"name": "c", "shape": ["N"], "dtype": "int64", "classes": vae.condition.names})
    return Exported("encoder", traced, inputs, "(mean [N, D], logvar [N, D]) of q(z|x)", difference,
                    model, make, ("mean", "logvar"))


EXPORTERS = {"decoder": export_decoder, "encoder": export_encoder, "output": export_output}


def onnx_bytes(e: Exported, batch: int = 0) -> tuple[bytes, float]:
    """``e``'s Python module as ONNX (a dynamic batch axis, or the fixed ``batch``), and its
    largest difference from the module in ONNX Runtime (at another batch size when dynamic)."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError("--format onnx needs the onnx and onnxruntime packages: pip install 'vaezoo[export]'") from None
    import tempfile

    example = e.make_inputs(batch or 2, 0)
    names = [i["name"] for i in e.inputs]
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")   # the exporter's deprecation and tracer notes; the check below decides
        path = Path(scratch) / f"{e.part}.onnx"
        try:
            torch.onnx.export(e.model, example, str(path), dynamo=False, input_names=names,
                              output_names=list(e.outputs), opset_version=17,
                              dynamic_axes=None if batch else {name: {0: "N"} for name in [*names, *e.outputs]})
        except Exception as err:   # an operator ONNX lacks (the exporter's many error types): say which, in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"the {e.part} cannot be written as ONNX: {first}; --format torchscript can") from None
        data = path.read_bytes()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    inputs = e.make_inputs(batch or 5, 1)
    with torch.no_grad():
        want = e.model(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    got = session.run(None, {name: t.numpy() for name, t in zip(names, inputs)})
    difference = max(float((w - torch.from_numpy(g)).abs().max()) for w, g in zip(want, got))
    if not difference <= TOLERANCE:
        raise InputError(f"the ONNX {e.part} differs from the model by {difference:.3g} in ONNX Runtime "
                         f"(allowed {TOLERANCE:g})")
    return data, difference


def export_run(run, out: Path, parts: list[str], fmt: str = "torchscript",
               batch: int = 0) -> tuple[list[Exported], Path]:
    """Export ``parts`` of ``run`` as TorchScript (or ONNX) into ``out``; returns them and
    export.json. Every part is traced and checked before any file is written, so a refused part
    leaves ``out`` as it was. ``batch`` > 0 fixes the batch size (0: any)."""
    run.vae.eval()
    done = [EXPORTERS[part](run, batch) for part in parts]
    onnx_files = {}
    if fmt == "onnx":
        for e in done:
            onnx_files[e.part], e.max_abs_difference = onnx_bytes(e, batch)
            e.suffix = ".onnx"
    out.mkdir(parents=True, exist_ok=True)
    from vaezoo.analysis.model_folder import plugin_state

    state = plugin_state(run.path)       # what the plugin fitted (a tokenizer, statistics): beside the files
    for path in state:
        shutil.copy2(path, out / path.name)
    for e in done:
        with atomic_path(out / e.file) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if fmt == "onnx":
                tmp.write_bytes(onnx_files[e.part])
            else:
                torch.jit.save(e.module, str(tmp))
    info: dict[str, Any] = {
        "format": fmt, "modality": run.recipe.modality, "run": str(run.path), "weights": run.weights,
        "weights_step": run.weights_step, "vaezoo_version": __version__, "run_format": RUN_FORMAT,
        "torch_version": torch.__version__, "latent_dim": run.vae.latent_dim,
        "parts": {e.part: {"file": e.file, "inputs": e.inputs, "output": e.output,
                           "max_abs_difference": e.max_abs_difference, "batch": batch or "any"} for e in done},
        "plugin_state": [path.name for path in state],
        "load": ("onnxruntime.InferenceSession(FILE).run(None, {input name: array})" if fmt == "onnx"
                 else "torch.jit.load(FILE).eval()") + "; no vaezoo needed",
    }
    manifest = out / "export.json"
    write_json(manifest, info)
    return done, manifest
