"""Building a model from a recipe, and opening a finished (or interrupted) run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch

from vaezoo.core.version import __version__
from vaezoo.train.checkpoints import BEST, RECIPE, latest_weights, load_weights
from vaezoo.train.formats import format_metadata
from vaezoo.core.errors import RecipeError, RunDirError
from vaezoo.plugin.protocol import CONDITION_API, Modality
from vaezoo.core.conditions import ClassCondition
from vaezoo.core.model import VAE, make_vae
from vaezoo.plugin.registry import get_modality, plugin_info
from vaezoo.config.recipe import Recipe, apply_overrides, read_toml
from vaezoo.plugin.recipes import build_recipe


def build_modality(recipe: Recipe, run_dir: Path | None) -> Modality:
    return get_modality(recipe.modality)(recipe, run_dir)


def build_vae(modality: Modality) -> VAE:
    """The run's VAE: the plugin's encoder and decoder with the recipe's prior, posterior and
    condition. A conditional recipe needs its classes resolved (``resolve_condition``)."""
    recipe = modality.recipe
    condition = build_condition(recipe)
    if condition is not None and not modality.uses_latent:
        raise RecipeError(recipe.source, "[condition] enabled",
                          f"this {recipe.modality} model's decoder ignores its input (z and the class with it); "
                          "a conditional model needs one that reads it")
    encoder, decoder = modality.build_encoder(), modality.build_decoder()
    if condition is not None:
        check_decoder_input(modality, decoder)
    try:
        return make_vae(encoder, decoder, recipe.latent.dim, prior=recipe.prior, posterior=recipe.posterior,
                        pseudo_inputs=modality.pseudo_inputs, condition=condition)
    except ValueError as err:
        raise RecipeError(recipe.source, "[prior] kind",
                          f"{recipe.prior.kind!r} {err}; the {recipe.modality} modality can use 'mog'") from None


def check_decoder_input(modality: Modality, decoder: torch.nn.Module) -> None:
    """A conditional recipe's decoder must take ``decoder_input_dim`` inputs (z and the class
    embedding): one row is decoded here (its mean too, for decoders that compute lazily), with
    the RNG left as it was, so a plugin that sized its decoder by ``latent.dim`` is named in one
    line instead of failing inside the first training step."""
    recipe, width = modality.recipe, modality.decoder_input_dim
    training = decoder.training
    decoder.eval()               # no batch-norm statistics move, no dropout draws
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            decoder(torch.zeros(1, width)).mean
    except Exception as err:   # plugin code may fail in any way; its first line says how
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecipeError(recipe.source, "[condition] enabled",
                          f"the {recipe.modality!r} plugin's decoder does not take decoder_input_dim = {width} inputs "
                          f"(z and the class embedding): {first}; a plugin builds its decoder with "
                          "Modality.decoder_input_dim (plugin API 1.4)") from None
    finally:
        decoder.train(training)


def build_condition(recipe: Recipe) -> ClassCondition | None:
    """The class condition of a conditional recipe (None otherwise), refused for a plugin written
    before the plugin API sized its networks for one."""
    c = recipe.condition
    if not c.enabled:
        return None
    declared = plugin_info(recipe.modality).api_version
    if declared is not None and declared < CONDITION_API:
        raise RecipeError(recipe.source, "[condition] enabled",
                          f"the {recipe.modality!r} plugin was written for plugin API {declared}; a conditional "
                          f"model needs a plugin written for {CONDITION_API} or later (its decoder must take "
                          "decoder_input_dim inputs)")
    if not c.classes:
        raise RecipeError(recipe.source, "[condition] classes",
                          "is 0 (read from the data) and was not resolved; train the recipe, or give classes = N")
    return ClassCondition(c.classes, c.embedding_dim, key=c.key, names=c.names, to_encoder=c.encoder)


def resolve_condition(recipe: Recipe, modality: Modality) -> bool:
    """Fill in a conditional recipe's ``classes`` and ``names`` from the data's class names
    (``Modality.label_names``, after ``fit``). Returns whether the recipe changed."""
    c = recipe.condition
    if not c.enabled or (c.classes and c.names):
        return False
    where = f"the {recipe.modality} data"
    names = modality.label_names or None
    if c.names:                       # the recipe names its classes (the data's names, if any, must agree)
        if names is not None and len(names) != len(c.names):
            raise RecipeError(recipe.source, "[condition] names",
                              f"gives {len(c.names)} names, but {where} has {len(names)} classes; give one name per "
                              "class, or none to take the data's")
        c.classes = len(c.names)
        return True
    if names is None and not c.classes:
        raise RecipeError(recipe.source, "[condition] classes",
                          f"is 0 (read from the data), but {where} names no classes; give the data labels (see the "
                          f"{recipe.modality} plugin's [data] options) or set classes = N")
    if names is not None and c.classes and len(names) != c.classes:
        raise RecipeError(recipe.source, "[condition] classes",
                          f"is {c.classes}, but {where} has {len(names)} classes ({', '.join(map(str, names[:10]))}"
                          f"{' ...' if len(names) > 10 else ''}); set classes = {len(names)} or 0")
    c.classes = c.classes or len(names or [])
    c.names = [str(n) for n in names] if names is not None else [str(i) for i in range(c.classes)]
    if len(set(c.names)) != len(c.names):
        raise RecipeError(recipe.source, "[condition] names",
                          f"{where} has repeated class names; give distinct names with [condition] names")
    return True


def weights_metadata(recipe: Recipe, **extra) -> dict[str, str]:
    """What model.safetensors records about where it came from."""
    info = plugin_info(recipe.modality)
    meta = {
        "format": "vaezoo",
        "vaezoo_version": __version__,
        "modality": recipe.modality,
        "plugin_distribution": info.distribution or "",
        "plugin_version": info.version or "",
        "plugin_api_version": str(info.api_version),
        "latent_dim": str(recipe.latent.dim),
        **format_metadata(),
    }
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunDirError(f"device {name!r} was asked for, but no CUDA device is available; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RunDirError(f"device {name!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RunDirError(f"device {name!r} was asked for, but MPS is not available here; use 'cpu' or 'auto'")
    return device


@dataclass
class Run:
    path: Path
    recipe: Recipe
    modality: Modality
    vae: VAE
    metadata: dict[str, str]
    device: torch.device
    weights_path: Path | None = None   # the file the weights came from

    @property
    def weights(self) -> str:
        """"best" or "last": which weights were loaded."""
        return "best" if self.weights_path is not None and self.weights_path.name == BEST else "last"

    @property
    def weights_step(self) -> int | None:
        """The training step of the loaded weights, from the file's metadata."""
        step = self.metadata.get("step")
        return int(step) if step is not None and step.isdigit() else None


def load_recipe_of_run(run_dir: Path, overrides: Sequence[str] = (), *, check_paths: bool = True) -> Recipe:
    """The resolved recipe of a run. ``check_paths=False`` lets a run whose data is gone still
    sample and decode; commands that read data fail later, naming the missing file."""
    recipe_path = run_dir / RECIPE
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a run directory (it does not exist)")
    if not recipe_path.exists():
        raise RunDirError(f"{run_dir}: not a run directory ({RECIPE} is missing)")
    raw, keys = apply_overrides(read_toml(recipe_path), overrides)
    return build_recipe(raw, source=str(recipe_path), base_dir=run_dir.resolve(), cli_keys=keys, check_paths=check_paths)


def open_run(
    run_dir: str | Path,
    *,
    weights: Literal["best", "last"] = "best",
    overrides: Sequence[str] = (),
    device: str = "auto",
) -> Run:
    """Rebuild the model of a run and load its weights (best falls back to last)."""
    run_dir = Path(run_dir)
    recipe = load_recipe_of_run(run_dir, overrides, check_paths=False)
    modality = build_modality(recipe, run_dir)
    vae = build_vae(modality)
    target = pick_device(device)
    path = run_dir / BEST if weights == "best" and (run_dir / BEST).exists() else latest_weights(run_dir)
    if path is None:
        raise RunDirError(f"{run_dir}: no weights yet (no checkpoint and no {BEST}); train it first")
    metadata = load_weights(vae, path)
    if metadata.get("modality") not in (None, recipe.modality):
        raise RunDirError(f"{path}: weights are for modality {metadata['modality']!r}, the recipe says {recipe.modality!r}")
    vae.to(target).eval()
    return Run(run_dir, recipe, modality, vae, metadata, target, path)
