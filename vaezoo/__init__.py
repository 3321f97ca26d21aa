"""vaezoo: a multi-modality variational-autoencoder toolkit.

The public plugin API (what a modality plugin may import) is re-exported here.
"""

__version__ = "0.1.0"

from vaezoo.batches import Batch, as_batch, batch_size
from vaezoo.checkpoints import atomic_path, write_json
from vaezoo.config import option
from vaezoo.distributions import DiagonalGaussian, StandardNormal
from vaezoo.errors import InputError, VaezooError
from vaezoo.likelihoods import Bernoulli, Categorical, Gaussian, Laplace, Likelihood
from vaezoo.modality import PLUGIN_API_VERSION, SPLITS, Modality
from vaezoo.model import VAE

__all__ = [
    "__version__",
    "Batch",
    "as_batch",
    "batch_size",
    "option",
    "atomic_path",
    "write_json",
    "DiagonalGaussian",
    "StandardNormal",
    "InputError",
    "VaezooError",
    "Bernoulli",
    "Categorical",
    "Gaussian",
    "Laplace",
    "Likelihood",
    "PLUGIN_API_VERSION",
    "SPLITS",
    "Modality",
    "VAE",
]
