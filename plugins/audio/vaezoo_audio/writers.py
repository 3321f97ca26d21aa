"""WAV files (soundfile) and PNG pictures of mel spectrograms, for a person to open.

WAV: 16-bit PCM at the recipe's sample rate; a waveform whose peak exceeds 0.99 is scaled
down to it (never up), so nothing clips and quiet outputs stay quiet.

PNG: a grid of spectrograms (laid out by the core's ``vaezoo.save_png_grid``), low
frequencies at the bottom, time to the right, each cell ``SCALE`` pixels per frame and mel
band, cells separated by ``PAD`` pixels of mid gray.
Colours map dB through a fixed ramp (black - purple - orange - pale yellow) over the
``DYNAMIC_RANGE_DB`` below the loudest value of the whole picture, so cells compare.

Every file is written atomically (``vaezoo.atomic_path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch

from vaezoo import atomic_path, save_png_grid
from vaezoo_audio.features import DB_PER_NEPER

PAD = 2
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


class SpectrogramGrid(NamedTuple):
    rows: list[list[np.ndarray]]   # RGB cells, uint8 [3, h, w]
    columns: int


def spectrogram_grid(rows: list[torch.Tensor], columns: int) -> SpectrogramGrid:
    """Rows of spectrograms (each ``[n <= columns, (1,) n_mels, T]``, natural log of power),
    coloured on one dB scale for the whole picture, ready for ``save_png``."""
    db = [[(cell.detach().float().cpu().reshape(-1, cell.shape[-1]) * DB_PER_NEPER).numpy() for cell in row]
          for row in rows]
    top = max(float(d.max()) for row in db for d in row)
    coloured = []
    for row in db:
        cells = []
        for values in row:
            scaled = (values - (top - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB
            image = colorize(np.repeat(np.repeat(scaled[::-1], SCALE, 0), SCALE, 1))   # low bands at the bottom
            cells.append(image.transpose(2, 0, 1))
        coloured.append(cells)
    return SpectrogramGrid(coloured, columns)


def save_png(grid: SpectrogramGrid, stem: Path) -> Path:
    """``STEM.png`` from ``spectrogram_grid``."""
    return save_png_grid(grid.rows, Path(f"{stem}.png"), columns=grid.columns, pad=PAD)


def save_wav(wave: torch.Tensor, sample_rate: int, path: Path) -> Path:
    """One mono waveform ``[L]`` as 16-bit PCM."""
    array = wave.detach().float().cpu().numpy()
    peak = float(np.abs(array).max()) if array.size else 0.0
    if peak > PEAK:
        array = array * (PEAK / peak)
    path = Path(path)
    with atomic_path(path) as tmp:   # the temporary's name ends in .tmp: name the format
        sf.write(str(tmp), array, sample_rate, subtype="PCM_16", format="WAV")
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
