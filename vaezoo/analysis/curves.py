"""Training and validation curves from metrics.jsonl, as one PNG (RUN/curves.png).

The trainer draws it at the end of every run; `vaezoo report` shows it. Panels: -ELBO,
reconstruction log p(x|z), KL, beta (the KL weight of the schedule), active units and
mutual information, each against the optimiser step, training windows and validations apart.
A run with an adversarial (VAE-GAN) phase gets a third row: the discriminator's loss, the
generator's adversarial and feature-matching losses, the discriminator's scores on real data
and on decoded fakes; a dashed line on every panel marks the step the phase began.
"""

from __future__ import annotations

from pathlib import Path

from vaezoo.train.checkpoints import METRICS, read_metrics

CURVES = "curves.png"

Panel = tuple[tuple[str, ...], str, tuple[str, ...]]
#: (metrics keys, panel title, splits drawn), three panels a row. A panel of one key has a
#: line per split; a panel of several keys has a line per key, labelled by LABELS.
PANELS: list[Panel] = [
    (("loss",), "loss (train: as minimised; validation: -ELBO)", ("train", "validation")),
    (("reconstruction",), "reconstruction log p(x|z)", ("train", "validation")),
    (("kl",), "KL(q(z|x) || p(z))", ("train", "validation")),
    (("beta",), "beta (KL weight)", ("train",)),
    (("active_units",), "active units", ("validation",)),
    (("mutual_information",), "mutual information I(x; z)", ("validation",)),
]
#: The row drawn when training records carry the adversarial (VAE-GAN) phase's figures.
ADVERSARIAL_PANELS: list[Panel] = [
    (("disc_loss",), "discriminator loss", ("train",)),
    (("gen_adversarial", "feature_matching"), "generator: adversarial and feature matching", ("train",)),
    (("disc_real", "disc_fake"), "discriminator scores", ("train",)),
]
LABELS = {"gen_adversarial": "adversarial", "feature_matching": "feature matching", "disc_real": "real",
          "disc_fake": "fake"}
#: The event record (split "event") that marks where the adversarial phase began.
ADVERSARIAL_START = "adversarial_start"
#: Losses can start orders of magnitude off; their panels may zoom past the first steps.
#: (Mutual information saturates instead: zooming would blow its last digits up.)
ZOOMED = ("loss", "reconstruction", "kl")


def series(records: list[dict]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """``{key: {split: (steps, values)}}`` for every panel key that has numbers."""
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for keys, _, splits in PANELS + ADVERSARIAL_PANELS:
        for key, split in ((key, split) for key in keys for split in splits):
            points = [(r["step"], r[key]) for r in records
                      if r.get("split") == split and isinstance(r.get(key), (int, float)) and "step" in r]
            if points:
                steps, values = zip(*points)
                out.setdefault(key, {})[split] = (list(steps), [float(v) for v in values])
    return out


def adversarial(data: dict) -> bool:
    """Whether ``series``' output holds any figure of the adversarial phase."""
    return any(key in data for keys, _, _ in ADVERSARIAL_PANELS for key in keys)


def panels(data: dict) -> list[Panel]:
    """The panels to draw for ``series``' output: PANELS, and ADVERSARIAL_PANELS below them
    when the adversarial phase was logged."""
    return PANELS + ADVERSARIAL_PANELS if adversarial(data) else PANELS


def event_step(records: list[dict], event: str = ADVERSARIAL_START) -> int | None:
    """The step of the first ``event`` record (the adversarial phase's start), None without one."""
    return next((r["step"] for r in records if r.get("split") == "event" and r.get("event") == event
                 and isinstance(r.get("step"), int)), None)


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
    records = read_metrics(metrics) if metrics.exists() else []
    data = series(records)
    if not data:
        return []
    drawn = panels(data)
    rows = len(drawn) // 3
    start = event_step(records)
    figure = new_figure(12, 3.25 * rows)
    axes = figure.subplots(rows, 3).flatten()
    for ax, (keys, title, _) in zip(axes, drawn):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        for key in keys:
            for split, (steps, values) in data.get(key, {}).items():
                # Validations are sparse: markers show each one.
                ax.plot(steps, values, label=split if len(keys) == 1 else LABELS.get(key, key),
                        marker="o" if split == "validation" else None, markersize=3)
        logged = [v for key in keys for _, v in data.get(key, {}).values()]
        limits = focus_range(logged) if set(keys) & set(ZOOMED) else None
        if limits is not None:
            ax.set_ylim(*limits)
            ax.set_title(f"{title} (first steps off the scale)", fontsize=10)
        if "active_units" in keys:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))   # a count: no 15.8 ticks
        if start is not None:
            ax.axvline(start, color="gray", linestyle="--", linewidth=1, label="adversarial start")
        if logged:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    return [save_png(figure, Path(run_dir) / CURVES)]
