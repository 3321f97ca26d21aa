"""The modality protocol: what a plugin implements so the core can train and use it.

Subclass ``Modality`` (or provide a class with the same members) and register it in the
``vaezoo.modalities`` entry-point group. The core builds one instance per command with the
resolved recipe and the run directory, then calls the methods below. Shapes use N for the
batch and D for the latent size; a batch is a dict (see ``vaezoo.core.batches``).

``REQUIRED_MEMBERS`` are abstract: a subclass that lacks one cannot be instantiated, and
discovery reports it as "not a modality". Every other member has a default here.

The plugin-API version is ``(major, minor)``. A plugin states the version it was written
for in ``api_version`` (an int N means ``(N, 0)``). The core loads a plugin whose major
equals its own and whose minor is at most its own; an older minor lacks only optional
members, which the defaults here supply. This module imports no torch at import time, so
listing plugins and reading their recipe sections stay cheap.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, NamedTuple, Sequence

from vaezoo.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from vaezoo.config.recipe import Recipe
    from vaezoo.core.batches import Batch
    from vaezoo.core.model import VAE


class ApiVersion(NamedTuple):
    """A plugin-API version; compares as the tuple ``(major, minor)`` and prints as ``1.1``."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


#: The plugin API this vaezoo provides. 1.0: the first protocol; 1.1 added optional members
#: (example_recipe, example_batch, uses_latent, label_names, recipe_folder), the fast-path
#: batches that collate receives, the extra_metrics contract (the exact evaluated examples)
#: and public helpers (derive_seed, atomic_path, write_json, save_png_grid, open_run ...);
#: 1.2 added pseudo_inputs (for the VampPrior) and an encoder's optional third output, its
#: context vector (for an IAF posterior); 1.3 added build_discriminator (the adversarial
#: stage); 1.4 added the class condition: decoder_input_dim, encoder_condition_dim and the
#: embedded condition in batch["condition"] (a conditional VAE), output_module (what
#: `vaezoo export --part output` appends to the decoder) and export_decoder (a scriptable
#: decoder, for text generation); 1.5 added the public progress bar (vaezoo.progress) and
#: cached_folder / file_fingerprint; 1.6 the Hugging Face data-set reader (vaezoo.hf_splits,
#: hf_batches, hf_columns). docs/plugins.md has the table and the rule for plugin authors.
PLUGIN_API_VERSION = ApiVersion(1, 6)
#: the first plugin API whose plugins size their networks for a conditional recipe
CONDITION_API = ApiVersion(1, 4)
SPLITS = ("train", "validation", "test")
#: the members a modality must define itself (abstract here); discovery reports the others missing
REQUIRED_MEMBERS = ("name", "api_version", "sections", "dataset", "build_encoder", "build_decoder")


def parse_api_version(value: Any) -> ApiVersion:
    """A declared ``api_version`` as ``(major, minor)``: an int N is ``(N, 0)``; a pair of ints
    is taken as it is. Anything else raises ``ValueError`` saying what is allowed."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if is_int(value):
        return ApiVersion(value, 0)
    if isinstance(value, tuple) and len(value) == 2 and all(is_int(v) for v in value):
        return ApiVersion(*value)
    raise ValueError(f"api_version {value!r} is neither an integer N nor a tuple (major, minor) of integers")


def api_version_problem(declared: ApiVersion) -> str | None:
    """Why a plugin written for ``declared`` cannot load in this vaezoo, or None when it can:
    the major must be equal, the minor at most the core's."""
    core = PLUGIN_API_VERSION
    head = f"written for plugin API {declared}; this vaezoo provides {core}"
    if declared.major > core.major or (declared.major == core.major and declared.minor > core.minor):
        return f"{head}: upgrade vaezoo"
    if declared.major < core.major:
        return f"{head}: the plugin needs a release for plugin API {core.major}.x"
    return None


class _Required:
    """A class attribute every modality must set. ``abc`` treats it as an abstract member, so
    a subclass that does not assign it stays abstract and discovery reports it missing."""

    __isabstractmethod__ = True

    def __init__(self, doc: str):
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<required class attribute {self.name!r}>"


def required(doc: str) -> Any:
    return _Required(doc)


def missing_members(obj: Any) -> list[str]:
    """The required members ``obj`` (a class) lacks or leaves abstract, in protocol order."""
    missing = []
    for member in REQUIRED_MEMBERS:
        try:
            value = getattr(obj, member)
        except Exception:  # a plugin's descriptor may raise anything; the member is then unusable
            missing.append(member)
            continue
        if getattr(value, "__isabstractmethod__", False):
            missing.append(member)
    return missing


class Modality(abc.ABC):
    """The base class of every modality plugin; see the module docstring and docs/plugins.md."""

    #: required: the name recipes use in ``modality = "..."``, the same as the entry-point name
    name: ClassVar[str] = required("the modality's name, the same string as its entry-point name")
    #: required: the plugin-API version this plugin was written for, ``(major, minor)`` or an int N = (N, 0)
    api_version: ClassVar[ApiVersion | tuple[int, int] | int] = required("the plugin-API version it was written for")
    #: required: recipe sections owned by the plugin: section name -> config dataclass (see vaezoo.config)
    sections: ClassVar[dict[str, type]] = required("recipe section name -> config dataclass")
    #: one line shown by ``vaezoo plugins``
    description: ClassVar[str] = ""
    #: (API 1.1) raw recipe tables (as in TOML) laid over the section defaults to make the plugin's
    #: default recipe, which ``vaezoo plugins check`` builds; paths are not checked for existence
    example_recipe: ClassVar[dict[str, Any]] = {}
    #: (API 1.1) a folder of ``.toml`` recipes shipped with the plugin, relative to the plugin module's
    #: folder; ``vaezoo recipes`` lists them and ``vaezoo train NAME`` finds them by name
    recipe_folder: ClassVar[str | None] = None

    def __init__(self, recipe: "Recipe", run_dir: Path | None = None):
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir is not None else None

    @property
    def uses_latent(self) -> bool:
        """(API 1.1) False for baselines whose decoder ignores z (a language model): the trainer
        then does not warn about posterior collapse."""
        return True

    @property
    def label_names(self) -> list[str] | None:
        """(API 1.1) Optional names of the classes that batches carry as ``"label"`` (index i -> name),
        for legends; None when labels are bare integers or the data has none."""
        return None

    @property
    def condition_dim(self) -> int:
        """(API 1.4) E, the size of the embedded class condition: ``condition.embedding_dim`` for a
        conditional recipe (``[condition] enabled``), 0 otherwise."""
        c = getattr(self.recipe, "condition", None)
        return c.embedding_dim if c is not None and c.enabled else 0

    @property
    def decoder_input_dim(self) -> int:
        """(API 1.4) The size of what the decoder receives: z, with the embedded condition
        appended for a conditional recipe (``latent.dim + condition_dim``). Build the decoder's
        first layer with it; the core hands the decoder ``[M, decoder_input_dim]``."""
        return self.recipe.latent.dim + self.condition_dim

    @property
    def encoder_condition_dim(self) -> int:
        """(API 1.4) E when the encoder reads the class (``condition.encoder``), else 0. The core
        then puts the embedding in ``batch["condition"]`` ``[N, E]``; append it to the encoder's
        features before its mean/log-variance layer (``vaezoo.nn.append_condition``), whose input
        grows by this size."""
        c = getattr(self.recipe, "condition", None)
        return self.condition_dim if c is not None and c.encoder else 0

    def export_decoder(self, decoder: "nn.Module") -> "nn.Module | None":
        """(API 1.4) Optional: for a decoder whose mean is a loop (text generation), a module with
        the same function written for ``torch.jit.script``: the decoder's input
        ``[M, decoder_input_dim]`` -> what ``decoder(z).mean`` gives. ``vaezoo export`` scripts it
        and checks it against the decoder. None (the default): the decoder's mean is traced."""
        return None

    def output_module(self) -> "nn.Module | None":
        """(API 1.4) Optional: a module from the decoder's mean ``[N, ...]`` to what a person hears
        or sees (audio: the waveform ``[N, L]``), with no randomness and a fixed number of steps,
        so that ``torch.jit.trace`` records it whole. ``vaezoo export --part output`` writes
        z -> this module(decoded mean). None (the default): the modality has no such part."""
        return None

    def pseudo_inputs(self, k: int) -> "nn.Module | None":
        """(API 1.2) Optional: ``k`` trainable pseudo-inputs for the VampPrior, as a module whose
        ``forward()`` (no arguments) returns a batch the encoder reads, of the data's shape and
        range (e.g. images: a sigmoid of free parameters). None (the default) means the modality
        has none (discrete inputs such as tokens), and recipes with ``prior.kind = "vamp"`` are
        refused with that reason."""
        return None

    def build_discriminator(self, options: Any) -> "nn.Module | None":
        """(API 1.3) Optional: the plugin's own discriminator for an ``[adversarial]`` recipe
        (``options`` is that section). It reads ``batch["x"]`` (and the decoder's mean, of the
        same shape) and returns ``list[list[Tensor]]``: per scale, its feature maps and, last,
        its logits (see ``vaezoo.core.discriminators``). None (the default) takes the core's
        generic discriminator when x is image-like (``[N, C, H, W]`` or ``[N, H, W]``, floats)
        and refuses the recipe with the reason otherwise; raise ``ValueError`` to refuse it
        with your own reason."""
        return None

    # -- data -------------------------------------------------------------------------------
    def fit(self, run_dir: Path) -> None:
        """Learn data-dependent state (a vocabulary, normalisation statistics) from the
        training split and save it under ``run_dir``. Called once, on rank 0, before training;
        every later instance for this run can read it from ``self.run_dir``."""

    def example_batch(self, n: int = 4) -> Batch:
        """(API 1.1) A batch of ``n`` examples for ``vaezoo plugins check``, which calls this first on an
        instance built from the default recipe with a fresh temporary ``run_dir``, then builds
        the networks. Prepare what they need here. Default: ``fit(run_dir)``, then the first
        ``n`` training examples; override it to check without reading data files."""
        from vaezoo.core.data import first_examples

        if self.run_dir is not None:
            self.fit(self.run_dir)
        return first_examples(self.dataset("train"), self.collate, n)

    @abc.abstractmethod
    def dataset(self, split: str) -> Dataset:
        """Required: a map-style dataset for ``split`` in ("train", "validation", "test")."""

    def collate(self, examples: Sequence[Any] | Batch) -> Batch:
        """Turn a list of dataset items into a batch dict with at least ``"x"``.

        A dataset may define ``__getitems__(indices) -> Batch`` to build a whole batch at once
        (vectorised indexing of an in-memory tensor is much faster than item by item); the
        DataLoader then hands that batch here, and it passes through unchanged.
        """
        from torch.utils.data import default_collate

        from vaezoo.core.batches import as_batch

        if isinstance(examples, dict):
            return as_batch(examples)
        return as_batch(default_collate(list(examples)))

    def load_inputs(self, items: Sequence[str]) -> Batch:
        """Turn command-line inputs (file paths, sentences) into a batch for reconstruct,
        interpolate and encode. Raise ``vaezoo.InputError`` naming the bad item."""
        raise InputError(f"the {self.name!r} modality takes no inputs on the command line; use --split instead")

    # -- networks ---------------------------------------------------------------------------
    @abc.abstractmethod
    def build_encoder(self) -> nn.Module:
        """Required: ``encoder(batch) -> (mean, logvar)``, each ``[N, D]`` with D = recipe.latent.dim."""

    @abc.abstractmethod
    def build_decoder(self) -> nn.Module:
        """Required: ``decoder(z) -> distribution`` for z ``[M, D]``: an object with ``log_prob(x, mask)``
        (summed per example, ``[M]``), ``mean`` and ``sample()``; see ``vaezoo.core.likelihoods``."""

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
    from safetensors.torch import save_file

    path = Path(f"{stem}.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(path))
    return [path]


def with_defaults(cls: type) -> type:
    """``cls`` when it subclasses ``Modality``; otherwise (a duck-typed modality) a subclass of
    ``cls`` and ``Modality``, so members it lacks (optional ones, or those a later minor
    version added) come from the defaults above while its own members win."""
    if issubclass(cls, Modality):
        return cls
    try:
        return type(cls.__name__, (cls, Modality), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                                    "__doc__": cls.__doc__})
    except TypeError:  # a metaclass or layout that cannot be combined: use the class as it is
        return cls
