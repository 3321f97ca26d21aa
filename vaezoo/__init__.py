"""vaezoo: a multi-modality variational-autoencoder toolkit.

The public plugin API (what a modality plugin may import) is re-exported here.
"""

__version__ = "0.1.0"

from vaezoo.batches import Batch, as_batch, batch_size, to_device
from vaezoo.checkpoints import atomic_path, write_json, write_text
from vaezoo.config import option
from vaezoo.distributions import DiagonalGaussian, StandardNormal
from vaezoo.data import first_examples, split_indices
from vaezoo.errors import InputError, PluginError, RecipeError, VaezooError
from vaezoo.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, Likelihood
from vaezoo.modality import PLUGIN_API_VERSION, SPLITS, Modality
from vaezoo.model import VAE
from vaezoo.plugin_check import CheckReport, check_plugin
from vaezoo.recipes import Recipe, load_recipe
from vaezoo.runs import Run, open_run

__all__ = [
    "__version__",
    "Batch",
    "as_batch",
    "batch_size",
    "to_device",
    "first_examples",
    "split_indices",
    "option",
    "atomic_path",
    "write_json",
    "write_text",
    "DiagonalGaussian",
    "StandardNormal",
    "InputError",
    "VaezooError",
    "PluginError",
    "RecipeError",
    "Bernoulli",
    "Categorical",
    "Gaussian",
    "Laplace",
    "Likelihood",
    "PLUGIN_API_VERSION",
    "SPLITS",
    "Modality",
    "VAE",
    "Recipe",
    "load_recipe",
    "open_run",
    "Run",
    "check_plugin",
    "CheckReport",
]
