"""Figures as PNG files, drawn with matplotlib's object API (no pyplot, so no global state
and no display backend: the Agg canvas renders off-screen, also on machines without X)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vaezoo.core.files import atomic_path


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Write ``figure`` to ``path`` atomically (a reader never sees half a PNG)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
