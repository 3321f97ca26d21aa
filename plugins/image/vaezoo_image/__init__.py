"""vaezoo-image: the image modality plugin for vaezoo.

Registered as ``image`` in the ``vaezoo.modalities`` entry-point group. Public pieces:
``ImageModality`` (the plugin), ``DataConfig`` / ``ModelConfig`` (its recipe sections),
``read_idx`` and ``load_image`` (readers), and ``latent_traversal`` (a sweep of one
latent dimension at a time, written by ``ImageModality.write_traversal``).

The plugin class and its sections load at once; the readers and writers (which need torch)
load on first use, so discovering the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import vaezoo

__version__ = "0.1.0"

from vaezoo_image.config import DataConfig, ModelConfig
from vaezoo_image.modality import ImageModality

# public name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {"load_image": "vaezoo_image.data", "read_idx": "vaezoo_image.data", "latent_traversal": "vaezoo_image.writers"}

__all__ = ["__version__", "ImageModality", "DataConfig", "ModelConfig", "read_idx", "load_image", "latent_traversal"]


__getattr__, __dir__ = vaezoo.lazy_attributes(__name__, _LAZY, __all__)


if TYPE_CHECKING:
    from vaezoo_image.data import load_image, read_idx
    from vaezoo_image.writers import latent_traversal
