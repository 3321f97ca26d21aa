"""vaezoo-image: the image modality plugin for vaezoo.

Registered as ``image`` in the ``vaezoo.modalities`` entry-point group. Public pieces:
``ImageModality`` (the plugin), ``DataConfig`` / ``ModelConfig`` (its recipe sections),
``read_idx`` and ``load_image`` (readers), and ``latent_traversal`` (a sweep of one
latent dimension at a time, written by ``ImageModality.write_traversal``).
"""

__version__ = "0.1.0"

from vaezoo_image.config import DataConfig, ModelConfig
from vaezoo_image.data import load_image, read_idx
from vaezoo_image.modality import ImageModality
from vaezoo_image.writers import latent_traversal

__all__ = ["__version__", "ImageModality", "DataConfig", "ModelConfig", "read_idx", "load_image", "latent_traversal"]
