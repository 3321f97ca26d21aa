"""The modality protocol: what a plugin implements so the core can train and use it.

Subclass ``Modality`` (or provide a class with the same members) and register it in the
``vaezoo.modalities`` entry-point group. The core builds one instance per command with the
resolved recipe and the run directory, then calls the methods below. Shapes use N for the
batch and D for the latent size; a batch is a dict (see ``vaezoo.core.batches``).

Plugin-API version 1. A plugin states the version it was written for in ``api_version``;
the core loads plugins whose version equals ``PLUGIN_API_VERSION`` and reports the others
as incompatible.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset, default_collate

from vaezoo.core.batches import Batch, as_batch
from vaezoo.core.data import first_examples
from vaezoo.core.errors import InputError

if TYPE_CHECKING:
    from vaezoo.core.model import VAE
    from vaezoo.config.recipe import Recipe

PLUGIN_API_VERSION = 1
SPLITS = ("train", "validation", "test")


class Modality:
    #: the name recipes use in ``modality = "..."``
    name: ClassVar[str] = ""
    #: the plugin-API version this plugin was written for
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    #: recipe sections owned by the plugin: section name -> config dataclass (see vaezoo.config)
    sections: ClassVar[dict[str, type]] = {}
    #: one line shown by ``vaezoo plugins``
    description: ClassVar[str] = ""
    #: raw recipe tables (as in TOML) laid over the section defaults to make the plugin's
    #: default recipe, which ``vaezoo plugins check`` builds; paths are not checked for existence
    example_recipe: ClassVar[dict[str, Any]] = {}
    #: a folder of ``.toml`` recipes shipped with the plugin, relative to the plugin module's
    #: folder; ``vaezoo recipes`` lists them and ``vaezoo train NAME`` finds them by name
    recipe_folder: ClassVar[str | None] = None

    def __init__(self, recipe: "Recipe", run_dir: Path | None = None):
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir is not None else None

    @property
    def uses_latent(self) -> bool:
        """False for baselines whose decoder ignores z (a language model): the trainer then
        does not warn about posterior collapse."""
        return True

    @property
    def label_names(self) -> list[str] | None:
        """Optional names of the classes that batches carry as ``"label"`` (index i -> name),
        for legends; None when labels are bare integers or the data has none."""
        return None

    # -- data -------------------------------------------------------------------------------
    def fit(self, run_dir: Path) -> None:
        """Learn data-dependent state (a vocabulary, normalisation statistics) from the
        training split and save it under ``run_dir``. Called once, on rank 0, before training;
        every later instance for this run can read it from ``self.run_dir``."""

    def example_batch(self, n: int = 4) -> Batch:
        """A batch of ``n`` examples for ``vaezoo plugins check``, which calls this first on an
        instance built from the default recipe with a fresh temporary ``run_dir``, then builds
        the networks. Prepare what they need here. Default: ``fit(run_dir)``, then the first
        ``n`` training examples; override it to check without reading data files."""
        if self.run_dir is not None:
            self.fit(self.run_dir)
        return first_examples(self.dataset("train"), self.collate, n)

    def dataset(self, split: str) -> Dataset:
        """A map-style dataset for ``split`` in ("train", "validation", "test")."""
        raise NotImplementedError

    def collate(self, examples: Sequence[Any] | Batch) -> Batch:
        """Turn a list of dataset items into a batch dict with at least ``"x"``.

        A dataset may define ``__getitems__(indices) -> Batch`` to build a whole batch at once
        (vectorised indexing of an in-memory tensor is much faster than item by item); the
        DataLoader then hands that batch here, and it passes through unchanged.
        """
        if isinstance(examples, dict):
            return as_batch(examples)
        return as_batch(default_collate(list(examples)))

    def load_inputs(self, items: Sequence[str]) -> Batch:
        """Turn command-line inputs (file paths, sentences) into a batch for reconstruct,
        interpolate and encode. Raise ``vaezoo.InputError`` naming the bad item."""
        raise InputError(f"the {self.name!r} modality takes no inputs on the command line; use --split instead")

    # -- networks ---------------------------------------------------------------------------
    def build_encoder(self) -> nn.Module:
        """``encoder(batch) -> (mean, logvar)``, each ``[N, D]`` with D = recipe.latent.dim."""
        raise NotImplementedError

    def build_decoder(self) -> nn.Module:
        """``decoder(z) -> distribution`` for z ``[M, D]``: an object with ``log_prob(x, mask)``
        (summed per example, ``[M]``), ``mean`` and ``sample()``; see ``vaezoo.core.likelihoods``."""
        raise NotImplementedError

    # -- outputs a person can open -----------------------------------------------------------
    def write_samples(self, px: Any, stem: Path) -> list[Path]:
        """Save decoded prior samples; ``stem`` is a path without extension. Return the files."""
        return _save_means({"mean": px.mean}, stem)

    def write_reconstructions(self, batch: Batch, px: Any, stem: Path) -> list[Path]:
        """Save inputs beside their reconstructions."""
        return _save_means({"input": batch["x"], "reconstruction": px.mean}, stem)

    def write_interpolations(self, px: Any, steps: int, stem: Path) -> list[Path]:
        """Save interpolations: ``px`` holds ``pairs * steps`` decodings, row-major per pair."""
        return _save_means({"mean": px.mean}, stem)

    # -- evaluation -------------------------------------------------------------------------
    def extra_metrics(self, vae: "VAE", batches: Iterable[Batch], base: dict[str, float]) -> dict[str, float]:
        """Modality-specific figures added to the eval table (e.g. perplexity). ``batches`` are
        exactly the examples the core evaluated (``base["n_examples"]`` of them, in order);
        ``base`` holds the core's results (elbo, iw_nll, kl, ...)."""
        return {}


def _save_means(tensors: dict[str, torch.Tensor], stem: Path) -> list[Path]:
    path = Path(f"{stem}.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(path))
    return [path]
