"""vaezoo: a multi-modality variational-autoencoder toolkit.

This namespace is the public plugin API: what a modality plugin may import. Names load on
first use (PEP 562), so ``import vaezoo`` and the command line's ``--help`` do not pay for
torch. The code lives in layers, each importing only the ones below it:

    vaezoo.cli         the command line
    vaezoo.analysis    latent maps, anomaly scores, curves, the report
    vaezoo.train       the training loop and its hooks, checkpoints, run directories
    vaezoo.plugin      the Modality protocol, the registry, the plugin check and scaffold
    vaezoo.config      typed recipe sections and their parsing
    vaezoo.core        distributions, likelihoods, objectives, estimators, the VAE, nn blocks
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaezoo.core.lazy import lazy_attributes
from vaezoo.core.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "Batch": "vaezoo.core.batches",
    "as_batch": "vaezoo.core.batches",
    "batch_size": "vaezoo.core.batches",
    "to_device": "vaezoo.core.batches",
    "first_examples": "vaezoo.core.data",
    "split_indices": "vaezoo.core.data",
    "derive_seed": "vaezoo.core.seeds",
    "lazy_attributes": "vaezoo.core.lazy",
    "option": "vaezoo.config.options",
    "atomic_path": "vaezoo.core.files",
    "write_json": "vaezoo.core.files",
    "write_text": "vaezoo.core.files",
    "progress": "vaezoo.core.progress",
    "cached_folder": "vaezoo.core.data_cache",
    "file_fingerprint": "vaezoo.core.data_cache",
    "hf_splits": "vaezoo.core.hf_data",
    "hf_batches": "vaezoo.core.hf_data",
    "hf_columns": "vaezoo.core.hf_data",
    "HFBatch": "vaezoo.core.hf_data",
    "save_png_grid": "vaezoo.core.images",
    "DiagonalGaussian": "vaezoo.core.distributions",
    "StandardNormal": "vaezoo.core.distributions",
    "InputError": "vaezoo.core.errors",
    "VaezooError": "vaezoo.core.errors",
    "PluginError": "vaezoo.core.errors",
    "RecipeError": "vaezoo.core.errors",
    "Bernoulli": "vaezoo.core.likelihoods",
    "Categorical": "vaezoo.core.likelihoods",
    "Gaussian": "vaezoo.core.likelihoods",
    "Laplace": "vaezoo.core.likelihoods",
    "Likelihood": "vaezoo.core.likelihoods",
    "PLUGIN_API_VERSION": "vaezoo.plugin.protocol",
    "SPLITS": "vaezoo.plugin.protocol",
    "Modality": "vaezoo.plugin.protocol",
    "VAE": "vaezoo.core.model",
    "Recipe": "vaezoo.config.recipe",
    "load_recipe": "vaezoo.plugin.recipes",
    "open_run": "vaezoo.train.runs",
    "Run": "vaezoo.train.runs",
    "check_plugin": "vaezoo.plugin.check",
    "CheckReport": "vaezoo.plugin.check",
    "latent_traversal": "vaezoo.analysis.traversal",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from vaezoo.config.options import option
    from vaezoo.config.recipe import Recipe
    from vaezoo.core.batches import Batch, as_batch, batch_size, to_device
    from vaezoo.core.data import first_examples, split_indices
    from vaezoo.core.distributions import DiagonalGaussian, StandardNormal
    from vaezoo.core.errors import InputError, PluginError, RecipeError, VaezooError
    from vaezoo.core.files import atomic_path, write_json, write_text
    from vaezoo.core.images import save_png_grid
    from vaezoo.core.progress import progress
    from vaezoo.core.data_cache import cached_folder, file_fingerprint
    from vaezoo.core.hf_data import HFBatch, hf_batches, hf_columns, hf_splits
    from vaezoo.core.seeds import derive_seed
    from vaezoo.core.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, Likelihood
    from vaezoo.core.model import VAE
    from vaezoo.plugin.check import CheckReport, check_plugin
    from vaezoo.plugin.protocol import PLUGIN_API_VERSION, SPLITS, Modality
    from vaezoo.plugin.recipes import load_recipe
    from vaezoo.train.runs import Run, open_run
    from vaezoo.analysis.traversal import latent_traversal
