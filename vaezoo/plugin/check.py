"""`vaezoo plugins check NAME`: does a plugin honour the protocol, end to end, on one batch?

The plugin's *default recipe* is every section's defaults (core and plugin) with the
plugin's ``example_recipe`` laid over them, then any ``--set`` overrides; paths in it are
not checked for existence, so a plugin whose ``example_batch`` needs no data passes on a
machine without its data sets. The check builds an instance with a fresh temporary run
directory, asks it for ``example_batch(n)``, builds the encoder and decoder, and runs what
training runs: the ELBO through the core objective, one backward pass, and a 2-sample
importance-weighted pass (the decoder then sees ``M = 2 * N`` latents). A plugin written for
plugin API 1.4 or later is also built for a conditional recipe (``[condition]`` on, three
classes given to the example batch): the decoder must take ``decoder_input_dim`` inputs, the
encoder must accept ``batch["condition"]``, and a different class must change the decoder's
output for the same z. Each stage that fails is reported as one line naming the stage.
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vaezoo.core.batches import Batch
from vaezoo.core.conditions import ClassCondition
from vaezoo.core.discriminators import verdicts_problem
from vaezoo.core.errors import VaezooError
from vaezoo.core.model import VAE, make_vae
from vaezoo.core.objectives import elbo_objective, log_importance_weights
from vaezoo.plugin.protocol import CONDITION_API, ApiVersion, Modality
from vaezoo.plugin.registry import get_modality, plugin_info
from vaezoo.config.recipe import Recipe, apply_overrides
from vaezoo.plugin.recipes import build_recipe

IWAE_SAMPLES = 2
CHECK_CLASSES = 3      # classes of the conditional stage's made-up labels


class PluginCheckError(VaezooError):
    """A plugin built, but broke the protocol (wrong shape, non-finite loss, no gradient ...)."""

    exit_code = 1


@dataclass
class CheckReport:
    name: str
    distribution: str | None
    version: str | None
    api_version: ApiVersion | None
    location: str | None
    batch: dict[str, str] = field(default_factory=dict)   # key -> shape and dtype, as text
    latent_dim: int = 0
    encoder_parameters: int = 0
    decoder_parameters: int = 0
    loss: float = math.nan
    elbo: float = math.nan
    conditional: bool = False     # the conditional stage ran (plugin API 1.4 or later)

    def lines(self) -> list[str]:
        dist = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        batch = ", ".join(f"{k} {v}" for k, v in self.batch.items())
        return [
            f"ok  {self.name} ({dist}, plugin API {self.api_version}, {self.location})",
            f"    example batch: {batch}",
            f"    encoder: {self.encoder_parameters:,} parameters -> mean, logvar [N, {self.latent_dim}]",
            f"    decoder: {self.decoder_parameters:,} parameters; log_prob per example, also for M = {IWAE_SAMPLES} * N",
            f"    loss {self.loss:.4f} (ELBO {self.elbo:.4f} nats per example); gradients reach encoder and decoder",
        ] + ([f"    conditional: decoder takes z + class embedding; the class changes its output ({CHECK_CLASSES} classes)"]
             if self.conditional else [])


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def default_recipe(name: str, overrides: Sequence[str] = ()) -> Recipe:
    """The section defaults with the plugin's ``example_recipe`` and ``overrides`` applied.

    Relative paths in ``example_recipe`` are relative to the folder of the plugin's module.
    """
    info = plugin_info(name)
    cls = get_modality(name)
    raw = _merge({"name": f"{name}-check"}, getattr(cls, "example_recipe", {}) or {})
    raw["modality"] = name
    raw, keys = apply_overrides(raw, overrides)
    base_dir = Path(info.location).parent if info.location else Path.cwd()
    return build_recipe(raw, source=f"default recipe of {name!r}", base_dir=base_dir, cli_keys=keys, check_paths=False)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, list):
        return f"list of {len(value)}"
    return type(value).__name__


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    if isinstance(err, VaezooError):
        return text[0] if text else type(err).__name__
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class _Stages:
    """Runs each stage, turning any failure into one ``PluginCheckError`` line naming it."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, stage: str, message: str) -> PluginCheckError:
        return PluginCheckError(f"plugins check {self.name}: {stage}: {message}")

    def run(self, stage: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PluginCheckError:
            raise
        except Exception as err:  # plugin code may fail in any way: report it as one line
            raise self.fail(stage, _first_line(err)) from None


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _expect(ok: bool, stages: _Stages, stage: str, message: str) -> None:
    if not ok:
        raise stages.fail(stage, message)


def _check_batch(batch: Any, stages: _Stages) -> int:
    _expect(isinstance(batch, dict) and "x" in batch, stages, "example_batch",
            f"expected a dict with key 'x' (a batch as collate returns it), got {type(batch).__name__}")
    n = len(batch["x"])
    _expect(n > 0, stages, "example_batch", "the batch is empty")
    for key, value in batch.items():
        if isinstance(value, (torch.Tensor, list)):
            _expect(len(value) == n, stages, "example_batch", f"batch[{key!r}] holds {len(value)} items, 'x' holds {n}")
    return n


def _check_encoder(vae: VAE, batch: Batch, n: int, stages: _Stages) -> None:
    out = stages.run("encoder", vae.encoder, batch)
    _expect(isinstance(out, tuple) and len(out) in (2, 3), stages, "encoder",
            f"expected (mean, logvar) or (mean, logvar, context), got {type(out).__name__}")
    want = (n, vae.latent_dim)
    for label, t in zip(("mean", "logvar"), out):
        _expect(isinstance(t, torch.Tensor) and tuple(t.shape) == want, stages, "encoder",
                f"{label} has shape {_describe(t)}, expected {list(want)} (N examples x latent.dim)")
        _expect(bool(torch.isfinite(t).all()), stages, "encoder", f"{label} holds NaN or inf")
    if len(out) == 3:  # (API 1.2) the context vector of an IAF posterior
        context = out[2]
        _expect(isinstance(context, torch.Tensor) and context.dim() == 2 and context.shape[0] == n, stages, "encoder",
                f"the context has shape {_describe(context)}, expected [{n}, C]")


def _check_decoder(vae: VAE, batch: Batch, n: int, stages: _Stages) -> None:
    z = torch.randn(n, vae.latent_dim, device=next(vae.parameters()).device)
    px = stages.run("decoder", vae.decoder, z)
    missing = [m for m in ("log_prob", "mean", "sample") if not hasattr(type(px), m) and not hasattr(px, m)]
    _expect(not missing, stages, "decoder", f"returned {type(px).__name__}, which lacks {', '.join(missing)}")
    lp = stages.run("decoder log_prob", px.log_prob, batch["x"], batch.get("mask"))
    _expect(isinstance(lp, torch.Tensor) and tuple(lp.shape) == (n,), stages, "decoder log_prob",
            f"returned {_describe(lp)}, expected [{n}] (log p(x|z) summed per example)")
    stages.run("decoder mean", lambda: px.mean)
    stages.run("decoder sample", px.sample)


def _check_training_step(vae: VAE, batch: Batch, stages: _Stages) -> tuple[float, float]:
    out = stages.run("ELBO", elbo_objective, vae, batch)
    loss = float(out.loss.detach())
    _expect(math.isfinite(loss), stages, "ELBO", f"the loss is {loss}")
    stages.run("backward", out.loss.backward)
    for part in ("encoder", "decoder"):
        params = [(n, p) for n, p in getattr(vae, part).named_parameters() if p.requires_grad]
        _expect(bool(params), stages, "backward", f"the {part} has no trainable parameters")
        bad = [n for n, p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
        _expect(not bad, stages, "backward", f"NaN or inf gradient in {part} parameter {bad[:1]}")
        reached = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for _, p in params)
        _expect(reached, stages, "backward", f"no gradient reaches the {part}'s parameters")
    with torch.no_grad():
        log_w, _ = stages.run(f"IWAE (k={IWAE_SAMPLES})", log_importance_weights, vae, batch, IWAE_SAMPLES)
    n = len(batch["x"])
    _expect(tuple(log_w.shape) == (IWAE_SAMPLES, n) and bool(torch.isfinite(log_w).all()), stages,
            f"IWAE (k={IWAE_SAMPLES})", f"log weights {_describe(log_w)} are not finite [{IWAE_SAMPLES}, {n}]")
    return loss, float(out.elbo.detach().mean())


def check_plugin(name: str, overrides: Sequence[str] = (), *, batch_size: int = 4) -> CheckReport:
    """Build plugin ``name`` from its default recipe and run one forward/backward pass on its
    example batch. Returns a report; raises ``PluginCheckError`` (or ``PluginError`` /
    ``RecipeError`` before the plugin is built) with one line saying what is wrong."""
    info = plugin_info(name)
    recipe = default_recipe(name, overrides)
    conditional = copy.deepcopy(recipe)
    recipe.condition.enabled = False     # the plain model first; the conditional stage below turns it on
    cls = get_modality(name)
    stages = _Stages(name)
    report = CheckReport(name, info.distribution, info.version, info.api_version, info.location,
                         latent_dim=recipe.latent.dim)
    with tempfile.TemporaryDirectory(prefix="vaezoo-check-") as run_dir, torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        modality = stages.run("__init__", cls, recipe, Path(run_dir))
        batch = stages.run("example_batch", modality.example_batch, batch_size)
        n = _check_batch(batch, stages)
        report.batch = {key: _describe(value) for key, value in batch.items()}
        encoder = stages.run("build_encoder", modality.build_encoder)
        decoder = stages.run("build_decoder", modality.build_decoder)
        for label, module in (("build_encoder", encoder), ("build_decoder", decoder)):
            _expect(isinstance(module, nn.Module), stages, label, f"returned {type(module).__name__}, not a torch.nn.Module")
        # The recipe's prior and posterior too, so `--set prior.kind=vamp` checks pseudo_inputs.
        vae = stages.run("prior and posterior", make_vae, encoder, decoder, recipe.latent.dim, prior=recipe.prior,
                         posterior=recipe.posterior, pseudo_inputs=modality.pseudo_inputs).train()
        report.encoder_parameters, report.decoder_parameters = _count(encoder), _count(decoder)
        _check_encoder(vae, batch, n, stages)
        _check_decoder(vae, batch, n, stages)
        report.loss, report.elbo = _check_training_step(vae, batch, stages)
        if type(modality).build_discriminator is not Modality.build_discriminator:
            _check_discriminator(modality, recipe, batch, stages)
        if info.api_version is not None and info.api_version >= CONDITION_API and modality.uses_latent:
            _check_condition(cls, conditional, Path(run_dir), batch, stages)
            report.conditional = True
    return report


def _check_condition(cls: type, recipe: Recipe, run_dir: Path, batch: Batch, stages: _Stages) -> None:
    """(API 1.4) The plugin's networks for a conditional recipe, on the example batch with
    made-up classes: a training step, and a decoder whose output depends on the class."""
    c = recipe.condition
    c.enabled, c.classes, c.names = True, CHECK_CLASSES, [f"class{i}" for i in range(CHECK_CLASSES)]
    modality = stages.run("__init__ (conditional)", cls, recipe, run_dir)
    encoder = stages.run("build_encoder (conditional)", modality.build_encoder)
    decoder = stages.run("build_decoder (conditional)", modality.build_decoder)
    condition = ClassCondition(CHECK_CLASSES, c.embedding_dim, key=c.key, names=c.names, to_encoder=c.encoder)
    vae = stages.run("conditional model", make_vae, encoder, decoder, recipe.latent.dim, condition=condition).train()
    n = len(batch["x"])
    labelled = {**batch, c.key: torch.arange(n) % CHECK_CLASSES}
    stage = f"conditional ELBO (decoder_input_dim = {modality.decoder_input_dim})"
    out = stages.run(stage, elbo_objective, vae, labelled)
    loss = float(out.loss.detach())
    _expect(math.isfinite(loss), stages, stage, f"the loss is {loss}")
    stages.run("conditional backward", out.loss.backward)
    grad = condition.embedding.weight.grad
    _expect(grad is not None and bool(grad.abs().sum() > 0), stages, "conditional backward",
            "no gradient reaches the class embedding: the decoder does not use its input beyond z")
    vae.eval()
    with torch.no_grad():
        z = torch.randn(1, recipe.latent.dim).expand(CHECK_CLASSES, -1)
        means = stages.run("conditional decoder", lambda: vae.decode(z, torch.arange(CHECK_CLASSES)).mean)
    _expect(isinstance(means, torch.Tensor) and not torch.equal(means[0], means[1]), stages, "conditional decoder",
            "two classes decode the same z to the same output: the decoder ignores the class embedding")


def _check_discriminator(modality: Modality, recipe, batch: Batch, stages: _Stages) -> None:
    """(API 1.3) A plugin's own discriminator, with the recipe's [adversarial] options, on x."""
    discriminator = stages.run("build_discriminator", modality.build_discriminator, recipe.adversarial)
    if discriminator is None:
        return
    _expect(isinstance(discriminator, nn.Module), stages, "build_discriminator",
            f"returned {type(discriminator).__name__}, not a torch.nn.Module")
    out = stages.run("discriminator", discriminator, batch["x"])
    problem = verdicts_problem(out)
    _expect(problem is None, stages, "discriminator", problem or "")
