"""vaezoo-audio: the audio modality plugin for vaezoo.

Registered as ``audio`` in the ``vaezoo.modalities`` entry-point group. Public pieces:
``AudioModality`` (the plugin), its recipe sections (``DataConfig``, ``FeaturesConfig``,
``ModelConfig``, ``InversionConfig``), the front end and its inverse (``FrontEnd``,
``Normalizer``, ``Inverter``), the reader ``read_audio``, the networks and ``mel_errors``
(mel L1 and log-spectral distance in dB).

The plugin class and its sections load at once; the rest (torch, torchaudio, soundfile)
loads on first use, so discovering the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import vaezoo

__version__ = "0.1.0"

from vaezoo_audio.config import DataConfig, FeaturesConfig, InversionConfig, ModelConfig
from vaezoo_audio.modality import AudioModality

# public name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {
    "FrontEnd": "vaezoo_audio.features",
    "Normalizer": "vaezoo_audio.features",
    "Inverter": "vaezoo_audio.features",
    "mel_errors": "vaezoo_audio.features",
    "read_audio": "vaezoo_audio.data",
    "list_audio": "vaezoo_audio.data",
    "MelEncoder": "vaezoo_audio.networks",
    "MelDecoder": "vaezoo_audio.networks",
}

__all__ = [
    "__version__",
    "AudioModality",
    "DataConfig",
    "FeaturesConfig",
    "ModelConfig",
    "InversionConfig",
    "FrontEnd",
    "Normalizer",
    "Inverter",
    "read_audio",
    "list_audio",
    "mel_errors",
    "MelEncoder",
    "MelDecoder",
]


__getattr__, __dir__ = vaezoo.lazy_attributes(__name__, _LAZY, __all__)


if TYPE_CHECKING:
    from vaezoo_audio.data import list_audio, read_audio
    from vaezoo_audio.features import FrontEnd, Inverter, Normalizer, mel_errors
    from vaezoo_audio.networks import MelDecoder, MelEncoder
