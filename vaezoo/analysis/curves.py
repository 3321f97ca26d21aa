"""Training and validation curves from metrics.jsonl, as one PNG (RUN/curves.png).

The trainer draws it at the end of every run; `vaezoo report` shows it. Panels: -ELBO,
reconstruction log p(x|z), KL, beta (the KL weight of the schedule), active units and
mutual information, each against the optimiser step, training windows and validations apart.
"""

from __future__ import annotations

from pathlib import Path

from vaezoo.train.checkpoints import METRICS, read_metrics

CURVES = "curves.png"

#: (metrics key, panel title, splits drawn)
PANELS = [
    ("loss", "-ELBO (loss)", ("train", "validation")),
    ("reconstruction", "reconstruction log p(x|z)", ("train", "validation")),
    ("kl", "KL(q(z|x) || p(z))", ("train", "validation")),
    ("beta", "beta (KL weight)", ("train",)),
    ("active_units", "active units", ("validation",)),
    ("mutual_information", "mutual information I(x; z)", ("validation",)),
]
#: Losses can start orders of magnitude off; their panels may zoom past the first steps.
#: (Mutual information saturates instead: zooming would blow its last digits up.)
ZOOMED = ("loss", "reconstruction", "kl")


def series(records: list[dict]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """``{key: {split: (steps, values)}}`` for every panel key that has numbers."""
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for key, _, splits in PANELS:
        for split in splits:
            points = [(r["step"], r[key]) for r in records
                      if r.get("split") == split and isinstance(r.get(key), (int, float)) and "step" in r]
            if points:
                steps, values = zip(*points)
                out.setdefault(key, {})[split] = (list(steps), [float(v) for v in values])
    return out


def focus_range(values: list[list[float]], skip: float = 0.05, factor: float = 4.0) -> tuple[float, float] | None:
    """y-limits that leave out the first ``skip`` of each series when those early values
    stretch the axis over ``factor`` times the range of the rest (a KL of 50,000 at step 1
    flattens a curve that then moves between 100 and 120); None when no zoom is needed."""
    every = [v for series_ in values for v in series_]
    rest = [v for series_ in values for v in series_[int(len(series_) * skip):]]
    if not rest:
        return None
    low, high = min(rest), max(rest)
    if high <= low or max(every) - min(every) <= factor * (high - low):
        return None
    pad = 0.1 * (high - low)
    return low - pad, high + pad


def write_curves(run_dir: Path) -> list[Path]:
    """Draw RUN/curves.png from RUN/metrics.jsonl; returns [] when there is nothing to draw."""
    # matplotlib loads only when a plot is drawn.
    from matplotlib.ticker import MaxNLocator

    from vaezoo.analysis.plotting import new_figure, save_png

    metrics = Path(run_dir) / METRICS
    data = series(read_metrics(metrics)) if metrics.exists() else {}
    if not data:
        return []
    figure = new_figure(12, 6.5)
    axes = figure.subplots(2, 3).flatten()
    for ax, (key, title, _) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        for split, (steps, values) in data.get(key, {}).items():
            # Validations are sparse: markers show each one.
            ax.plot(steps, values, label=split, marker="o" if split == "validation" else None, markersize=3)
        limits = focus_range([v for _, v in data.get(key, {}).values()]) if key in ZOOMED else None
        if limits is not None:
            ax.set_ylim(*limits)
            ax.set_title(f"{title} (first steps off the scale)", fontsize=10)
        if key == "active_units":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))   # a count: no 15.8 ticks
        if key in data:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    return [save_png(figure, Path(run_dir) / CURVES)]
