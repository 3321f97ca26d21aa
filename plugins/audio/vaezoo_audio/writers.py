"""WAV files (soundfile) and PNG pictures of mel spectrograms (Pillow), for a person to open.

WAV: 16-bit PCM at the recipe's sample rate; a waveform whose peak exceeds 0.99 is scaled
down to it (never up), so nothing clips and quiet outputs stay quiet.

PNG: a grid of spectrograms, low frequencies at the bottom, time to the right, each cell
``SCALE`` pixels per frame and mel band, cells separated by ``PAD`` pixels of mid gray.
Colours map dB through a fixed ramp (black - purple - orange - pale yellow) over the
``DYNAMIC_RANGE_DB`` below the loudest value of the whole picture, so cells compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from vaezoo_audio.features import DB_PER_NEPER

PAD = 2
PAD_VALUE = 128
SCALE = 2
DYNAMIC_RANGE_DB = 80.0
PEAK = 0.99
# A perceptually ordered ramp (close to matplotlib's "magma"), interpolated linearly.
_RAMP = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]], float)


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB through the ramp."""
    position = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return np.round(_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def spectrogram_grid(rows: list[torch.Tensor], columns: int) -> Image.Image:
    """Rows of spectrograms (each ``[n <= columns, (1,) n_mels, T]``, natural log of power) in one picture."""
    cells = [(r, c, cell) for r, row in enumerate(rows) for c, cell in enumerate(row)]
    db = [(cell.detach().float().cpu().reshape(-1, cell.shape[-1]) * DB_PER_NEPER).numpy() for _, _, cell in cells]
    top = max(float(d.max()) for d in db)
    mels, frames = db[0].shape
    h, w = mels * SCALE, frames * SCALE
    canvas = np.full((len(rows) * h + (len(rows) + 1) * PAD, columns * w + (columns + 1) * PAD, 3), PAD_VALUE, dtype=np.uint8)
    for (r, c, _), values in zip(cells, db):
        scaled = (values - (top - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB
        image = colorize(np.repeat(np.repeat(scaled[::-1], SCALE, 0), SCALE, 1))   # low bands at the bottom
        top_px, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
        canvas[top_px : top_px + h, left : left + w] = image
    return Image.fromarray(canvas)


def save_png(image: Image.Image, stem: Path) -> Path:
    path = Path(f"{stem}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def save_wav(wave: torch.Tensor, sample_rate: int, path: Path) -> Path:
    """One mono waveform ``[L]`` as 16-bit PCM."""
    array = wave.detach().float().cpu().numpy()
    peak = float(np.abs(array).max()) if array.size else 0.0
    if peak > PEAK:
        array = array * (PEAK / peak)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), array, sample_rate, subtype="PCM_16")
    return path


def numbered(stem: Path, i: int, count: int, suffix: str = "") -> Path:
    """``stem-07{suffix}.wav`` with as many digits as ``count`` needs (at least two)."""
    return Path(f"{stem}-{i:0{max(2, len(str(count - 1)))}d}{suffix}.wav")


def join_with_gaps(waves: torch.Tensor, gap: int) -> torch.Tensor:
    """``waves [S, L]`` -> one waveform with ``gap`` samples of silence between them."""
    silence = waves.new_zeros(gap)
    parts = []
    for i, wave in enumerate(waves):
        if i:
            parts.append(silence)
        parts.append(wave)
    return torch.cat(parts)
