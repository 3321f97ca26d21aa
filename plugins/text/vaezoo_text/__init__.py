"""vaezoo-text: the text modality plugin for vaezoo.

Registered as ``text`` in the ``vaezoo.modalities`` entry-point group. Public pieces:
``TextModality`` (the plugin), its recipe sections (``DataConfig``, ``TokenizerConfig``,
``ModelConfig``, ``GenerateConfig``), ``SentenceDistribution`` (the autoregressive p(x|z)
with ``generate``), the readers ``read_lines`` / ``read_wordnet``, the tokenizer helpers
and ``perplexity``.

The plugin class, its sections and ``perplexity`` load at once; the rest (torch, the
tokenizers) loads on first use, so discovering the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import vaezoo

__version__ = "0.1.0"

from vaezoo_text.config import DataConfig, GenerateConfig, ModelConfig, TokenizerConfig
from vaezoo_text.modality import TextModality, perplexity

# public name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {
    "SentenceDistribution": "vaezoo_text.networks",
    "Encoder": "vaezoo_text.networks",
    "Decoder": "vaezoo_text.networks",
    "read_lines": "vaezoo_text.data",
    "read_wordnet": "vaezoo_text.data",
    "train_tokenizer": "vaezoo_text.tokenizer",
    "save_tokenizer": "vaezoo_text.tokenizer",
    "load_tokenizer": "vaezoo_text.tokenizer",
}

__all__ = [
    "__version__",
    "TextModality",
    "DataConfig",
    "TokenizerConfig",
    "ModelConfig",
    "GenerateConfig",
    "SentenceDistribution",
    "Encoder",
    "Decoder",
    "read_lines",
    "read_wordnet",
    "train_tokenizer",
    "save_tokenizer",
    "load_tokenizer",
    "perplexity",
]


__getattr__, __dir__ = vaezoo.lazy_attributes(__name__, _LAZY, __all__)


if TYPE_CHECKING:
    from vaezoo_text.data import read_lines, read_wordnet
    from vaezoo_text.networks import Decoder, Encoder, SentenceDistribution
    from vaezoo_text.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
