"""The audio modality: what vaezoo's core calls to train and use a mel-spectrogram VAE.

Importing this module is cheap: torch, torchaudio, soundfile and the data, feature, network
and writer modules load inside the methods that use them (an instance builds its front end
at once), so `vaezoo plugins`, `vaezoo recipes` and `vaezoo options` read the class's
sections without paying for them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import vaezoo
from vaezoo import InputError, Modality, VaezooError

from vaezoo_audio.config import DataConfig, FeaturesConfig, InversionConfig, ModelConfig

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from vaezoo_audio.data import AudioSource
    from vaezoo_audio.features import Inverter, Normalizer

RECONSTRUCTION_COLUMNS = 8


class AudioModality(Modality):
    name = "audio"
    api_version = vaezoo.PLUGIN_API_VERSION
    sections = {"data": DataConfig, "features": FeaturesConfig, "model": ModelConfig, "inversion": InversionConfig}
    description = "audio: conv VAE on log-mel clips of WAV/FLAC/OGG folders; Griffin-Lim back to WAV; spectral metrics"
    # `vaezoo plugins check audio` reads no audio (see example_batch): the path is a placeholder.
    example_recipe = {"data": {"path": "."}}

    def __init__(self, recipe, run_dir: Path | None = None):
        super().__init__(recipe, run_dir)
        from vaezoo_audio.features import FrontEnd

        self.front_end = FrontEnd(recipe.features)
        # Opened on first use: sampling from a finished run needs neither the data nor a split.
        self._source: AudioSource | None = None
        self._normalizer: Normalizer | None = None
        self._inverter: Inverter | None = None
        self._datasets: dict[str, Dataset] = {}
        #: seconds spent in Griffin-Lim inversion by the writers so far (the benchmark reads it)
        self.inversion_seconds = 0.0

    @property
    def clip_frames(self) -> int:
        return self.recipe.data.clip_frames

    @property
    def clip_samples(self) -> int:
        """Samples of every generated clip: (T - 1) * hop_length."""
        return self.front_end.samples(self.clip_frames)

    @property
    def source(self) -> AudioSource:
        if self._source is None:
            from vaezoo_audio.data import AudioSource

            self._source = AudioSource(self.recipe.data, self.front_end)
        return self._source

    # -- normalisation statistics -------------------------------------------------------------
    def fit(self, run_dir: Path) -> None:
        """Fit log-mel statistics on the training split; save them as run_dir/audio_stats.json."""
        from vaezoo_audio.features import Normalizer

        d, f = self.recipe.data, self.recipe.features
        Normalizer.fit(self.source.training_features(d.stats_max_files), f.n_mels, f.normalize).save(run_dir, f)
        self.run_dir = Path(run_dir)
        self._normalizer = None   # read back from the file, exactly as every later instance will
        self._datasets = {}

    @property
    def normalizer(self) -> Normalizer:
        if self._normalizer is None:
            if self.run_dir is None:
                raise VaezooError("the audio modality needs a run directory holding audio_stats.json (written by fit)")
            from vaezoo_audio.features import Normalizer

            self._normalizer = Normalizer.load(self.run_dir, self.recipe.features)
        return self._normalizer

    # -- data ---------------------------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        if split not in self._datasets:
            self._datasets[split] = self.source.split(split, self.normalizer)
        return self._datasets[split]

    @property
    def label_names(self) -> list[str] | None:
        """With ``data.labels = "folder"``: the class names (the folders at ``data.label_depth``,
        sorted, over every recording), index i -> name; None otherwise."""
        if self.recipe.data.labels != "folder":
            return None
        return list(self.source.classes or [])

    def example_batch(self, n: int = 4) -> vaezoo.Batch:
        """Standardised random log-mel clips ``[n, 1, n_mels, T]``, as the datasets give them
        (with a ``"label"`` of class 0 when ``data.labels = "folder"``: no folder is read here)."""
        import torch

        x = torch.randn(n, 1, self.recipe.features.n_mels, self.clip_frames)
        batch = {"x": x, "length": torch.full((n,), self.clip_frames)}
        if self.recipe.data.labels == "folder":
            batch["label"] = torch.zeros(n, dtype=torch.long)
        return batch

    def load_inputs(self, items: Sequence[str]) -> vaezoo.Batch:
        """Audio files given on the command line: the first T frames of each (after trimming, when
        the recipe trims), padded like the data."""
        import torch

        from vaezoo_audio.data import crop_or_pad, read_audio

        if not items:
            raise InputError("no input audio files given")
        d = self.recipe.data
        clips, lengths = [], []
        for item in items:
            wave, rate = read_audio(Path(item))
            log_mel = self.front_end(wave, rate, d.trim_db if d.trim_silence else None)
            clip, real = crop_or_pad(log_mel, 0, self.clip_frames, self.front_end.log_floor)
            clips.append(clip)
            lengths.append(real)
        x = self.normalizer.normalize(torch.stack(clips)).unsqueeze(1)
        return {"x": x, "length": torch.tensor(lengths)}

    # -- networks -----------------------------------------------------------------------------
    def build_encoder(self) -> nn.Module:
        from vaezoo_audio.networks import MelEncoder

        return MelEncoder(self.recipe.features.n_mels, self.clip_frames, self.recipe.latent.dim, self.recipe.model,
                          self.encoder_condition_dim)

    def build_decoder(self) -> nn.Module:
        from vaezoo_audio.networks import MelDecoder

        return MelDecoder(self.recipe.features.n_mels, self.clip_frames, self.decoder_input_dim, self.recipe.model)

    def pseudo_inputs(self, k: int) -> nn.Module:
        """The VampPrior's pseudo-clips: ``k`` learned standardised log-mel clips of full length."""
        import torch

        from vaezoo.nn import PseudoInputs

        return PseudoInputs(k, (1, self.recipe.features.n_mels, self.clip_frames),
                            constants={"length": torch.full((k,), self.clip_frames)})

    # -- back to sound ------------------------------------------------------------------------
    def output_module(self) -> nn.Module:
        """(API 1.4) The decoder's mean -> waveform, for `vaezoo export --part output`: Griffin-Lim
        from zero phase (the exported path has no randomness), with the recipe's iterations."""
        from vaezoo_audio.features import Inverter, WaveformHead

        return WaveformHead(self.normalizer, Inverter(self.recipe.features, self.recipe.inversion))

    @property
    def inverter(self) -> Inverter:
        if self._inverter is None:
            from vaezoo_audio.features import Inverter

            self._inverter = Inverter(self.recipe.features, self.recipe.inversion)
        return self._inverter

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised model-space clips ``[N, 1, n_mels, T]`` -> log-mel ``[N, n_mels, T]`` on the CPU."""
        return self.normalizer.denormalize(x.detach().float().cpu().squeeze(1))

    def to_waves(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[N, n_mels, T]`` -> waveforms ``[N, (T - 1) * hop]`` (inverse mel, then Griffin-Lim).

        Griffin-Lim's initial phases come from a generator seeded with the recipe's seed, so the
        same decodings always give the same WAV files, whatever the command did with the RNG."""
        import torch

        started = time.perf_counter()
        waves = self.inverter(log_mel, torch.Generator().manual_seed(self.recipe.seed))
        self.inversion_seconds += time.perf_counter() - started
        return waves

    # -- writers ------------------------------------------------------------------------------
    def _png(self, rows: list[torch.Tensor], columns: int, stem: Path) -> list[Path]:
        if not self.recipe.inversion.png:
            return []
        from vaezoo_audio import writers

        return [writers.save_png(writers.spectrogram_grid(rows, columns), stem)]

    def write_samples(self, px, stem: Path) -> list[Path]:
        """One WAV per sample (``stem-00.wav`` ...) and a PNG grid of their spectrograms."""
        from vaezoo_audio import writers

        log_mel = self.log_mel(px.mean)
        n, rate = len(log_mel), self.recipe.features.sample_rate
        files = [writers.save_wav(w, rate, writers.numbered(stem, i, n)) for i, w in enumerate(self.to_waves(log_mel))]
        columns = math.ceil(math.sqrt(n))
        return self._png(list(log_mel.split(columns)), columns, stem) + files

    def write_reconstructions(self, batch: vaezoo.Batch, px, stem: Path) -> list[Path]:
        """``stem-00-input.wav`` (the input's log-mel inverted the same way, for a fair comparison),
        ``stem-00-reconstruction.wav`` ..., and a PNG of input rows over reconstruction rows."""
        import torch

        from vaezoo_audio import writers

        inputs, outputs = self.log_mel(batch["x"]), self.log_mel(px.mean)
        n, rate = len(inputs), self.recipe.features.sample_rate
        waves = self.to_waves(torch.cat([inputs, outputs]))   # one batched Griffin-Lim
        files = []
        for i in range(n):
            files.append(writers.save_wav(waves[i], rate, writers.numbered(stem, i, n, "-input")))
            files.append(writers.save_wav(waves[n + i], rate, writers.numbered(stem, i, n, "-reconstruction")))
        columns = min(RECONSTRUCTION_COLUMNS, n)
        rows = []
        for a, b in zip(inputs.split(columns), outputs.split(columns)):
            rows += [a, b]
        return self._png(rows, columns, stem) + files

    def write_interpolations(self, px, steps: int, stem: Path) -> list[Path]:
        """One WAV per pair (``stem-00.wav`` ...): its ``steps`` clips with short silences between,
        and a PNG with one row per pair."""
        from vaezoo_audio import writers

        log_mel = self.log_mel(px.mean)
        if len(log_mel) % steps:
            raise ValueError(f"{len(log_mel)} decodings do not split into paths of {steps} steps")
        rate = self.recipe.features.sample_rate
        gap = round(self.recipe.inversion.gap_seconds * rate)
        paths = self.to_waves(log_mel).split(steps)
        files = [writers.save_wav(writers.join_with_gaps(w, gap), rate, writers.numbered(stem, p, len(paths)))
                 for p, w in enumerate(paths)]
        return self._png(list(log_mel.split(steps)), steps, stem) + files

    # -- evaluation ---------------------------------------------------------------------------
    def extra_metrics(self, vae, batches: Iterable[vaezoo.Batch], base: dict) -> dict[str, float]:
        """Reconstruction errors on the evaluated clips, over real (unpadded) frames, in dB of
        mel power: ``mel_l1_db`` (mean absolute difference) and ``lsd_db`` (log-spectral
        distance: per frame the root-mean-square difference over mel bands, then the mean)."""
        import torch

        from vaezoo_audio.features import mel_errors

        device = next(vae.parameters()).device
        l1 = lsd = 0.0
        frames = 0
        with torch.no_grad():
            for batch in batches:   # exactly the clips the core evaluated
                batch = vaezoo.to_device(batch, device)
                _, px = vae.reconstruct(batch)
                a, b, c = mel_errors(self.log_mel(batch["x"]), self.log_mel(px.mean), batch["length"].cpu())
                l1, lsd, frames = l1 + a, lsd + b, frames + c
        if not frames:
            return {}
        return {"mel_l1_db": l1 / frames, "lsd_db": lsd / frames}
