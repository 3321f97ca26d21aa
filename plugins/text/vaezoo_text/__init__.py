"""vaezoo-text: the text modality plugin for vaezoo.

Registered as ``text`` in the ``vaezoo.modalities`` entry-point group. Public pieces:
``TextModality`` (the plugin), its recipe sections (``DataConfig``, ``TokenizerConfig``,
``ModelConfig``, ``GenerateConfig``), ``SentenceDistribution`` (the autoregressive p(x|z)
with ``generate``), the readers ``read_lines`` / ``read_wordnet``, the tokenizer helpers
and ``perplexity``.
"""

__version__ = "0.1.0"

from vaezoo_text.config import DataConfig, GenerateConfig, ModelConfig, TokenizerConfig
from vaezoo_text.data import read_lines, read_wordnet
from vaezoo_text.modality import TextModality, perplexity
from vaezoo_text.networks import Decoder, Encoder, SentenceDistribution
from vaezoo_text.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

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
