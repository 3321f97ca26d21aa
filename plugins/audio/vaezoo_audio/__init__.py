"""vaezoo-audio: the audio modality plugin for vaezoo.

Registered as ``audio`` in the ``vaezoo.modalities`` entry-point group. Public pieces:
``AudioModality`` (the plugin), its recipe sections (``DataConfig``, ``FeaturesConfig``,
``ModelConfig``, ``InversionConfig``), the front end and its inverse (``FrontEnd``,
``Normalizer``, ``Inverter``), the reader ``read_audio``, the networks and ``mel_errors``
(mel L1 and log-spectral distance in dB).
"""

__version__ = "0.1.0"

from vaezoo_audio.config import DataConfig, FeaturesConfig, InversionConfig, ModelConfig
from vaezoo_audio.data import list_audio, read_audio
from vaezoo_audio.features import FrontEnd, Inverter, Normalizer, mel_errors
from vaezoo_audio.modality import AudioModality
from vaezoo_audio.networks import MelDecoder, MelEncoder

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
