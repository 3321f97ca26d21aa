"""The audio modality's recipe sections: [data], [features], [model] and [inversion]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vaezoo import option


@dataclass
class DataConfig:
    path: Path = option(help="a folder of audio files (searched recursively; hidden files skipped)", must_exist=True)
    extensions: list[str] = option([".wav", ".flac", ".ogg"], help="file suffixes read (case-insensitive)")
    clip_frames: int = option(64, min=4, help="T: spectrogram frames per clip; a clip is (T - 1) * hop_length samples")
    trim_silence: bool = option(False, help="cut leading and trailing frames quieter than the loudest by trim_db")
    trim_db: float = option(40.0, gt=0.0, help="silence threshold below the loudest frame of the file (dB)")
    validation_fraction: float = option(0.1, gt=0.0, max=0.5, help="share of the files held out for validation")
    test_fraction: float = option(0.1, gt=0.0, max=0.5, help="share of the files held out for testing")
    split_seed: int = option(0, min=0, help="seed of the held-out splits (kept apart from the training seed)")
    max_files: int = option(0, min=0, help="use a seeded random subset of this many files before splitting (0 = all)")
    stats_max_files: int = option(
        0, min=0, help="fit the normalisation statistics on at most this many training files, a seeded subset (0 = all)"
    )
    labels: Literal["none", "folder"] = option(
        "none",
        help="class labels of the batches (\"label\", for latent-map colours and scores): 'none', or 'folder': "
             "the name of the folder at label_depth below path (classes sorted, over every split)",
    )
    label_depth: int = option(
        1, min=1,
        help="with labels = 'folder': which folder level below path names a recording's class (1 = the first "
             "sub-folder; klettres: 1 = language, 2 = alpha or syllab)",
    )
    cache_mb: int = option(
        256, min=0,
        help="keep computed log-mel features of up to this many MB in memory (least recently used first out; 0 = "
             "decode every access); memory stays bounded whatever the folder's size",
    )

    def check(self) -> None:
        bad = [e for e in self.extensions if not e.startswith(".")]
        if bad or not self.extensions:
            raise ValueError(f"extensions: expected suffixes starting with '.', e.g. ['.wav', '.ogg'], got {self.extensions}")


@dataclass
class FeaturesConfig:
    sample_rate: int = option(16000, min=1000, help="every file is mixed down to mono and resampled to this rate (Hz)")
    n_fft: int = option(1024, min=16, help="FFT size of the short-time Fourier transform")
    hop_length: int = option(256, min=1, help="samples between frames")
    win_length: int = option(0, min=0, help="window length in samples (0 = n_fft)")
    n_mels: int = option(64, min=4, help="mel bands")
    f_min: float = option(0.0, min=0.0, help="lowest mel-filter frequency (Hz)")
    f_max: float = option(0.0, min=0.0, help="highest mel-filter frequency (Hz; 0 = sample_rate / 2)")
    mel_scale: Literal["htk", "slaney"] = option("htk", help="mel formula of the filter bank")
    log_floor: float = option(1e-5, gt=0.0, help="mel power is clamped to at least this before the log (digital silence)")
    normalize: Literal["mel", "global", "none"] = option(
        "mel", help="standardise log-mel with statistics of the training split: per mel band, one for all, or not at all"
    )

    @property
    def window(self) -> int:
        return self.win_length or self.n_fft

    @property
    def top_frequency(self) -> float:
        return self.f_max or self.sample_rate / 2

    def check(self) -> None:
        if self.window > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.hop_length > self.window:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed the window ({self.window}): frames would leave gaps")
        if self.top_frequency > self.sample_rate / 2:
            raise ValueError(f"f_max ({self.f_max:g} Hz) is above the Nyquist frequency ({self.sample_rate / 2:g} Hz)")
        if self.f_min >= self.top_frequency:
            raise ValueError(f"f_min ({self.f_min:g} Hz) must be below f_max ({self.top_frequency:g} Hz)")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(f"n_mels ({self.n_mels}) must not exceed the {self.n_fft // 2 + 1} frequency bins of n_fft")


@dataclass
class ModelConfig:
    channels: list[int] = option([32, 64, 128], min=1, help="widths of the conv stages; each halves mel and time")
    kernel_size: int = option(3, min=1, help="kernel side (odd)")
    activation: Literal["relu", "elu", "silu", "leaky_relu"] = option("silu", help="non-linearity after every conv")
    norm: Literal["none", "batch", "group"] = option("none", help="normalisation after each convolution")
    groups: int = option(8, min=1, help="groups of norm = 'group' (must divide every width)")
    likelihood: Literal["gaussian", "laplace"] = option("laplace", help="p(x|z) on the normalised log-mel")
    scale: float | Literal["learned"] = option(
        "learned", gt=0.0, help="the likelihood's scale: a fixed number, or 'learned' (one per mel band)"
    )

    def check(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: must be odd so 'same' padding keeps sizes exact, got {self.kernel_size}")
        if not self.channels:
            raise ValueError("channels: at least one stage width is needed, e.g. channels = [32, 64]")
        if self.norm == "group":
            bad = [c for c in self.channels if c % self.groups]
            if bad:
                raise ValueError(f"groups = {self.groups} must divide every width in channels; it does not divide {bad}")


@dataclass
class InversionConfig:
    nnls_iterations: int = option(
        20, min=0,
        help="multiplicative non-negative least-squares steps after InverseMelScale's solution, whose negative "
             "lobes (clipped to 0) leak energy into neighbouring bands (0 = InverseMelScale alone)",
    )
    iterations: int = option(32, min=1, help="Griffin-Lim iterations")
    momentum: float = option(0.99, min=0.0, help="fast Griffin-Lim momentum (0 = the original algorithm; below 1)")
    random_phase: bool = option(True, help="start Griffin-Lim from random phases (drawn with the recipe's seed)")
    gap_seconds: float = option(0.15, min=0.0, help="silence between the steps of an interpolation WAV")
    png: bool = option(True, help="also write a PNG of the mel spectrograms beside the WAV files")

    def check(self) -> None:
        if self.momentum >= 1:
            raise ValueError(f"momentum must be below 1 (Griffin-Lim diverges otherwise), got {self.momentum}")
