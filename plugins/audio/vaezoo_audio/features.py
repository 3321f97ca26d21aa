"""From waveforms to normalised log-mel spectrograms and back.

- ``FrontEnd``: resample to the recipe's rate, log-mel spectrogram (torchaudio's
  ``MelSpectrogram``, power 2, centred frames: L samples give ``L // hop + 1`` frames),
  optional trimming of leading and trailing silence.
- ``Normalizer``: mean and standard deviation of log-mel (per mel band, one global pair, or
  none), fitted on the training split and stored as JSON in the run directory.
- ``Inverter``: log-mel -> mel power -> linear power (``InverseMelScale``'s minimum-norm
  least-squares solution, which copes with rank-deficient filter banks, as a pseudo-inverse
  computed once), refined by non-negative least-squares steps (the filter bank's products
  block by block along its bands: ``BandedProduct``) -> waveform by
  fast Griffin-Lim (``griffin_lim``: torchaudio's algorithm, batched over CPU threads).
  T frames become ``(T - 1) * hop`` samples.
- ``mel_errors``: mel L1 and log-spectral distance in dB between two log-mel batches.

Log-mel values are natural logs of mel power; ``DB_PER_NEPER`` converts them to dB.
"""

from __future__ import annotations

import functools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import torch
import torchaudio

from vaezoo import VaezooError, write_json

from vaezoo_audio.config import FeaturesConfig, InversionConfig

DB_PER_NEPER = 10.0 / math.log(10.0)  # 10 * log10(P) = DB_PER_NEPER * ln(P)
STATS_FILE = "audio_stats.json"
STATS_FORMAT = "vaezoo-audio-stats"


class FrontEnd:
    """Waveform -> log-mel ``[n_mels, frames]`` with the recipe's [features]."""

    def __init__(self, cfg: FeaturesConfig):
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.window, hop_length=cfg.hop_length,
            f_min=cfg.f_min, f_max=cfg.top_frequency, n_mels=cfg.n_mels, power=2.0, center=True,
            pad_mode="reflect", norm=None, mel_scale=cfg.mel_scale,
        )
        self.log_floor = math.log(cfg.log_floor)
        self._resamplers: dict[int, torchaudio.transforms.Resample] = {}

    def resample(self, wave: torch.Tensor, rate: int) -> torch.Tensor:
        """``wave [..., L]`` at ``rate`` Hz -> the recipe's rate (the filter is built once per rate)."""
        if rate == self.cfg.sample_rate:
            return wave
        if rate not in self._resamplers:
            self._resamplers[rate] = torchaudio.transforms.Resample(rate, self.cfg.sample_rate)
        return self._resamplers[rate](wave)

    def resampled_length(self, length: int, rate: int) -> int:
        """Samples after resampling ``length`` samples at ``rate`` (torchaudio's rounding: up)."""
        if rate == self.cfg.sample_rate:
            return length
        g = math.gcd(rate, self.cfg.sample_rate)
        orig, new = rate // g, self.cfg.sample_rate // g
        return -(-new * length // orig)

    def frames(self, samples: int) -> int:
        """Frames of a waveform of ``samples`` samples (centred frames; tiny inputs are padded)."""
        return max(samples, self.cfg.n_fft // 2 + 1) // self.cfg.hop_length + 1

    def samples(self, frames: int) -> int:
        """Samples that ``frames`` frames are inverted to."""
        return (frames - 1) * self.cfg.hop_length

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [..., L]`` at the recipe's rate -> natural-log mel power ``[..., n_mels, frames]``."""
        short = self.cfg.n_fft // 2 + 1 - wave.shape[-1]
        if short > 0:  # reflect padding needs more samples than half a window: pad with silence
            wave = torch.nn.functional.pad(wave, (0, short))
        return self.mel(wave).clamp_min(self.cfg.log_floor).log()

    def trim(self, log_mel: torch.Tensor, top_db: float) -> torch.Tensor:
        """Drop leading and trailing frames whose total power is more than ``top_db`` below the loudest."""
        energy = torch.logsumexp(log_mel, dim=-2) * DB_PER_NEPER   # dB per frame
        loud = torch.nonzero(energy >= energy.max() - top_db).flatten()
        return log_mel[..., int(loud[0]) : int(loud[-1]) + 1]

    def __call__(self, wave: torch.Tensor, rate: int, trim_db: float | None = None) -> torch.Tensor:
        """A mono waveform ``[L]`` at ``rate`` Hz -> log-mel ``[n_mels, frames]``, trimmed when ``trim_db`` is set."""
        log_mel = self.log_mel(self.resample(wave, rate))
        return self.trim(log_mel, trim_db) if trim_db else log_mel


class Normalizer:
    """Standardises log-mel ``[..., n_mels, T]`` with fitted means and standard deviations ``[n_mels]``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, mode: str = "mel", frames: int = 0, files: int = 0):
        self.mean, self.std = mean.float(), std.float()
        self.mode, self.frames, self.files = mode, frames, files

    @classmethod
    def fit(cls, log_mels: Iterable[torch.Tensor], n_mels: int, mode: str) -> "Normalizer":
        """Statistics over every frame of ``log_mels`` (each ``[n_mels, frames]``), summed in float64."""
        total = torch.zeros(n_mels, dtype=torch.float64)
        squares = torch.zeros(n_mels, dtype=torch.float64)
        frames = files = 0
        for log_mel in log_mels:
            x = log_mel.double()
            total += x.sum(-1)
            squares += (x * x).sum(-1)
            frames += x.shape[-1]
            files += 1
        if frames == 0:
            raise VaezooError("cannot fit the normalisation: the training split has no audio frames")
        if mode == "none":
            return cls(torch.zeros(n_mels), torch.ones(n_mels), mode, frames, files)
        if mode == "global":
            total, squares, count = total.sum().expand(n_mels), squares.sum().expand(n_mels), frames * n_mels
        else:
            count = frames
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        # A band that never varies (above the content's bandwidth, or digital silence) keeps a unit-ish scale.
        std = var.sqrt().clamp_min(1e-2)
        return cls(mean, std, mode, frames, files)

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.mean.to(log_mel).unsqueeze(-1)) / self.std.to(log_mel).unsqueeze(-1)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x).unsqueeze(-1) + self.mean.to(x).unsqueeze(-1)

    # -- the run directory's copy ---------------------------------------------------------------
    def save(self, run_dir: Path, features: FeaturesConfig) -> Path:
        payload = {
            "format": STATS_FORMAT, "version": 1, "normalize": self.mode, "frames": self.frames, "files": self.files,
            "features": asdict(features), "mean": self.mean.tolist(), "std": self.std.tolist(),
        }
        path = Path(run_dir) / STATS_FILE
        write_json(path, payload)
        return path

    @classmethod
    def load(cls, run_dir: Path, features: FeaturesConfig) -> "Normalizer":
        path = Path(run_dir) / STATS_FILE
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VaezooError(f"{path} is missing: the audio modality writes it when training starts "
                              "(normalisation statistics of the training split)") from None
        except (OSError, ValueError) as err:
            raise VaezooError(f"{path}: cannot read normalisation statistics ({err})") from None
        if payload.get("format") != STATS_FORMAT or len(payload.get("mean", [])) != features.n_mels:
            raise VaezooError(f"{path}: not statistics for {features.n_mels} mel bands; was [features] changed "
                              "after training? (log-mel features cannot change once a model is trained)")
        return cls(torch.tensor(payload["mean"]), torch.tensor(payload["std"]), payload.get("normalize", "mel"),
                   payload.get("frames", 0), payload.get("files", 0))


class BandedProduct(torch.nn.Module):
    """``s -> s @ F @ F^T`` for a mel filter bank F ``[freq, mels]``, block by block.

    A mel bank is banded: each band covers a run of neighbouring frequency bins, and only
    the bands next to each other overlap. Cut into ``groups`` runs of bands, each run touches
    a short run of bins, so the product is ``groups`` small matmuls each way instead of two
    dense ones: 4 runs do a quarter of the multiply-adds (about 3x faster at batch 64, the
    same at batch 1, where per-call overhead rules). Rows are frames: ``s [N, freq]``.
    """

    flat: torch.Tensor  # buffer: the blocks of F, one after another

    def __init__(self, fb: torch.Tensor, groups: int = 4):
        super().__init__()
        mels = fb.shape[1]
        groups = max(1, min(groups, mels))
        edges = [round(i * mels / groups) for i in range(groups + 1)]
        self.spans: list[list[int]] = []        # [first bin, end bin, first band, end band, offset]
        blocks, offset = [], 0
        for first_band, end_band in zip(edges, edges[1:]):
            rows = (fb[:, first_band:end_band] != 0).any(dim=1).nonzero().flatten()
            # A run of all-zero bands (possible with a tiny f_max) still gets a one-bin block.
            first_bin, end_bin = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 1)
            blocks.append(fb[first_bin:end_bin, first_band:end_band].reshape(-1))
            self.spans.append([first_bin, end_bin, first_band, end_band, offset])
            offset += blocks[-1].numel()
        self.mels = mels
        self.register_buffer("flat", torch.cat(blocks).contiguous(), persistent=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        projections: list[torch.Tensor] = []
        for span in self.spans:
            first_bin, end_bin, first_band, end_band, offset = span[0], span[1], span[2], span[3], span[4]
            block = self.flat[offset:offset + (end_bin - first_bin) * (end_band - first_band)]
            projections.append(s[:, first_bin:end_bin] @ block.view(end_bin - first_bin, end_band - first_band))
        back = torch.zeros_like(s)
        for span, projection in zip(self.spans, projections):
            first_bin, end_bin, first_band, end_band, offset = span[0], span[1], span[2], span[3], span[4]
            block = self.flat[offset:offset + (end_bin - first_bin) * (end_band - first_band)]
            back[:, first_bin:end_bin].addmm_(projection, block.view(end_bin - first_bin, end_band - first_band).t())
        return back


class Inverter(torch.nn.Module):
    """Log-mel ``[..., n_mels, T]`` -> waveform ``[..., (T - 1) * hop]``."""

    window: torch.Tensor  # buffers (register_buffer in __init__)
    fb_t: torch.Tensor
    mel_pinv_t: torch.Tensor

    def __init__(self, features: FeaturesConfig, inversion: InversionConfig):
        super().__init__()
        self.features, self.inversion = features, inversion
        fb = torchaudio.functional.melscale_fbanks(
            features.n_fft // 2 + 1, f_min=features.f_min, f_max=features.top_frequency, n_mels=features.n_mels,
            sample_rate=features.sample_rate, norm=None, mel_scale=features.mel_scale,
        )                                                                # [freq, mels], the front end's
        # Frames are rows here ([N, mels] -> [N, freq]), the layout Griffin-Lim wants, so the
        # products below are plain 2-D matmuls with the transposed matrices.
        self.register_buffer("fb_t", fb.T.contiguous(), persistent=False)
        # InverseMelScale's minimum-norm least-squares solve (gelsd, an SVD per call) as one
        # matrix computed once, with lstsq's float32 cut-off for small singular values: the same
        # solution (the tests compare them), and a call costs a matmul.
        cutoff = torch.finfo(torch.float32).eps * max(fb.shape)
        pinv = torch.linalg.pinv(fb.double().T, rtol=cutoff).float()      # [freq, mels]
        self.register_buffer("mel_pinv_t", pinv.T.contiguous(), persistent=False)
        self.banded = BandedProduct(fb)
        self.register_buffer("window", torch.hann_window(features.window), persistent=False)

    def frame_power(self, log_mel_frames: torch.Tensor) -> torch.Tensor:
        """Non-negative least-squares linear power ``[N, n_fft // 2 + 1]`` of log-mel frames ``[N, n_mels]``.

        ``InverseMelScale`` gives the minimum-norm least-squares solution and clips its negative
        lobes to 0, which leaves energy in bands next to strong ones (on a sine sweep, 20 dB and
        more of log-spectral distance back in the mel domain). Multiplicative updates (Lee and
        Seung 2001) from that start keep the spectrum non-negative and bring its mel projection
        back to the target: ``s <- s * (F m) / (F F^T s)`` for the filter bank F ``[freq, mels]``.
        """
        mel = log_mel_frames.float().exp()
        linear = torch.relu(mel @ self.mel_pinv_t)
        steps = self.inversion.nnls_iterations
        if steps:
            target = mel @ self.fb_t                          # F m, fixed
            # Every bin starts above 0: a multiplicative update never revives an exact zero.
            linear = linear + 1e-3 * linear.amax(dim=-1, keepdim=True) + 1e-12
            for _ in range(steps):
                linear = linear * target / self.banded(linear).clamp_min_(1e-20)
        return linear

    def linear_power(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Linear power ``[..., n_fft // 2 + 1, T]`` of a log-mel ``[..., n_mels, T]`` (``frame_power``
        per frame; the result is a transposed view of frames-major memory, which ``griffin_lim``
        reads without a copy)."""
        frames = log_mel.transpose(-1, -2)
        power = self.frame_power(frames.reshape(-1, frames.shape[-1]))
        return power.view(*frames.shape[:-1], power.shape[-1]).transpose(-1, -2)

    def griffin_lim(self, power: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Linear power ``[..., freq, T]`` -> waveform ``[..., (T - 1) * hop]`` by fast Griffin-Lim.

        Initial phases are drawn here, from ``generator`` (default: the global RNG, as torchaudio
        draws them); the batch
        is then cut into one chunk per torch CPU thread, inverted side by side in a thread pool
        (torch releases the GIL inside its operators, and a chunk's FFTs run on one core each,
        which intra-op threading does not give), and joined. Chunks are independent, so the
        result does not depend on how they were scheduled.
        """
        f, inv = self.features, self.inversion
        shape = power.shape
        magnitude = power.float().clamp_min(0).sqrt().reshape(-1, *shape[-2:])
        if inv.random_phase:
            angles = torch.rand(magnitude.shape, dtype=torch.complex64, generator=generator)
        else:
            angles = torch.ones(magnitude.shape, dtype=torch.complex64)
        run = functools.partial(
            griffin_lim, window=self.window, n_fft=f.n_fft, hop_length=f.hop_length, win_length=f.window,
            n_iter=inv.iterations, momentum=inv.momentum, length=(shape[-1] - 1) * f.hop_length,
        )
        workers = min(torch.get_num_threads(), len(magnitude))
        if workers <= 1:
            wave = run(magnitude, angles)
        else:
            with ThreadPoolExecutor(workers) as pool:
                wave = torch.cat(list(pool.map(run, magnitude.chunk(workers), angles.chunk(workers))))
        return wave.reshape(*shape[:-2], wave.shape[-1])

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.griffin_lim(self.linear_power(log_mel), generator)


class WaveformHead(torch.nn.Module):
    """Standardised log-mel clips ``[N, 1, n_mels, T]`` (the decoder's mean) -> waveforms
    ``[N, (T - 1) * hop]``: denormalise, invert the mel scale, fast Griffin-Lim from zero phase
    (no randomness, one thread): the export of the path ``to_waves`` takes."""

    mean: torch.Tensor  # buffers (register_buffer in __init__): [n_mels, 1]
    std: torch.Tensor

    def __init__(self, normalizer: "Normalizer", inverter: Inverter):
        super().__init__()
        self.inverter = inverter
        self.register_buffer("mean", normalizer.mean.float().unsqueeze(-1))
        self.register_buffer("std", normalizer.std.float().unsqueeze(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, inv = self.inverter.features, self.inverter.inversion
        log_mel = x.float().squeeze(1) * self.std + self.mean
        magnitude = self.inverter.linear_power(log_mel).clamp_min(0).sqrt()
        angles = torch.ones(magnitude.shape, dtype=torch.complex64)
        return griffin_lim(magnitude, angles, window=self.inverter.window, n_fft=f.n_fft, hop_length=f.hop_length,
                           win_length=f.window, n_iter=inv.iterations, momentum=inv.momentum,
                           length=(log_mel.shape[-1] - 1) * f.hop_length)


def _overlap_add(frames: torch.Tensor, hop: int, out: torch.Tensor) -> torch.Tensor:
    """``frames [B, T, R * hop]`` summed ``hop`` samples apart into ``out [B, (T + R - 1) * hop]``
    (overwritten): R strided adds, much cheaper than ``torch.istft``'s general fold."""
    batch, count, size = frames.shape
    parts = frames.view(batch, count, size // hop, hop)
    blocks = out.view(batch, -1, hop)
    blocks.zero_()
    for k in range(size // hop):
        blocks[:, k:k + count].add_(parts[:, :, k])
    return out


def griffin_lim(magnitude: torch.Tensor, angles: torch.Tensor, *, window: torch.Tensor, n_fft: int, hop_length: int,
                win_length: int, n_iter: int, momentum: float, length: int) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) from given initial phases.

    The algorithm of ``torchaudio.functional.griffinlim`` step for step (the tests check the
    two agree), written for speed on the CPU, where the work is memory-bound more than it
    is FFTs: frames stay ``[B, T, freq]`` (no transposes), the inverse STFT's window envelope
    is computed once, overlap-add is R strided adds, every buffer is allocated once and
    reused (a fresh large tensor per step costs page faults), and the phase update ``u / |u|``
    is ``torch.sgn``. About twice as fast as calling ``torch.istft`` and ``torch.stft``.
    TorchScript-able: the exported waveform head runs it. ``magnitude [B, freq, T]``,
    ``angles`` complex of the same shape, ``length == (T - 1) * hop_length``; returns
    ``[B, length]``.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    batch, frames = magnitude.shape[0], magnitude.shape[-1]
    half = n_fft // 2
    if length != (frames - 1) * hop_length or length <= half:
        raise ValueError(f"Griffin-Lim of {frames} frames gives {(frames - 1) * hop_length} samples, which must exceed "
                         f"half the FFT size ({half}); got length {length}")
    alpha = momentum / (1 + momentum)
    device = magnitude.device
    # The window centred in n_fft samples (as torch.stft pads it), then zeros up to R whole hops.
    parts = -(-n_fft // hop_length)
    span = parts * hop_length
    left = (n_fft - win_length) // 2
    padded_window = torch.zeros(span, device=device)
    padded_window[left:left + win_length] = window
    stft_window = padded_window[:n_fft]
    signal_length = (frames + parts - 1) * hop_length           # >= length + n_fft
    envelope = _overlap_add((padded_window * padded_window).expand(1, frames, span), hop_length,
                            torch.empty(1, signal_length, device=device))[0]
    inverse_envelope = torch.where(envelope > 1e-11, 1 / envelope, torch.zeros_like(envelope))

    # [B, T, freq], complex with zero imaginary parts: the per-step product with the phases
    # then needs no float -> complex conversion (a copy as large as the spectrogram each step).
    mag = magnitude.float().transpose(1, 2).contiguous().to(torch.complex64)
    spec = mag * angles.transpose(1, 2)
    signal = torch.empty(batch, signal_length, device=device)
    windowed = torch.empty(batch, frames, n_fft, device=device)
    rebuilt = torch.empty(batch, frames, half + 1, dtype=torch.complex64, device=device)
    previous = torch.empty_like(rebuilt)
    for i in range(n_iter + 1):
        # Inverse STFT: signal[half : half + length] are the samples torch.istft(center=True) keeps.
        inverse = torch.fft.irfft(spec, n=n_fft)
        if span != n_fft:
            inverse = torch.nn.functional.pad(inverse, (0, span - n_fft))
        inverse.mul_(padded_window)
        _overlap_add(inverse, hop_length, signal).mul_(inverse_envelope)
        if i == n_iter:
            break
        # STFT of those samples, reflected into both edges as torch.stft(center=True) pads them.
        signal[:, :half].copy_(signal[:, half + 1:2 * half + 1].flip(-1))
        signal[:, half + length:length + 2 * half].copy_(signal[:, length - 1:length - 1 + half].flip(-1))
        torch.mul(signal[:, :length + 2 * half].unfold(-1, n_fft, hop_length), stft_window, out=windowed)
        previous, rebuilt = rebuilt, previous
        torch.fft.rfft(windowed, out=rebuilt)
        update = rebuilt if i == 0 or alpha == 0 else torch.sub(rebuilt, previous, alpha=alpha, out=spec)
        torch.sgn(update, out=spec).mul_(mag)
    return signal[:, half:half + length].clone()


def mel_errors(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[float, float, int]:
    """Summed mel L1 (dB) and log-spectral distance (dB) over real frames, and the frame count.

    ``a, b``: log-mel ``[N, (1,) n_mels, T]`` (natural log of power); ``lengths [N]`` real
    frames per clip (padding is skipped). Per frame, L1 is the mean absolute dB difference over
    bands and the LSD the root-mean-square one; divide both sums by the count for the means.
    """
    diff = (a.float() - b.float()).reshape(a.shape[0], -1, a.shape[-1]) * DB_PER_NEPER   # [N, M, T]
    l1 = diff.abs().mean(1)                   # [N, T]
    lsd = diff.pow(2).mean(1).sqrt()          # [N, T]
    if lengths is None:
        mask = torch.ones_like(l1, dtype=torch.bool)
    else:
        mask = torch.arange(a.shape[-1], device=a.device).unsqueeze(0) < lengths.to(a.device).unsqueeze(1)
    return float(l1[mask].sum()), float(lsd[mask].sum()), int(mask.sum())
