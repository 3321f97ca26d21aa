"""A 2-D map of the latent space: posterior means projected by PCA or t-SNE, drawn as a
scatter coloured by label (or by k-means cluster when the data has no labels), with the
k-means clustering of the full-dimensional means scored against the labels (adjusted Rand
index). Labels come from the batches' optional ``"label"`` tensor (see ``vaezoo.core.batches``).

Files, in RUN/latent-map/ unless told otherwise: ``SPLIT-METHOD.png`` (the scatter),
``SPLIT-METHOD.csv`` (the plotted points: x, y, label, cluster) and ``SPLIT-METHOD.json``
(what was done and the adjusted Rand index).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vaezoo.core.files import atomic_path, write_json
from vaezoo.core.errors import InputError

METHODS = {"pca": "PCA", "tsne": "t-SNE"}   # option value -> name in titles
FOLDER = "latent-map"


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Project ``[N, D]`` onto its first two principal axes (scikit-learn's exact PCA); returns
    the points and the share of variance each axis explains. Signs are fixed (each axis's
    largest loading positive) so the same data always gives the same picture, whatever the
    scikit-learn version. D = 1 gives a second coordinate of zeros; fewer than two points, or
    points that all coincide, give zeros and shares of 0."""
    from sklearn.decomposition import PCA

    x = x.detach().double().cpu()
    n, d = x.shape
    if n < 2 or not (x - x.mean(0)).any():
        return torch.zeros(n, 2), [0.0, 0.0]
    pca = PCA(n_components=min(2, d, n), svd_solver="full").fit(x.numpy())
    axes = torch.from_numpy(pca.components_)                                 # [2 or 1, D]
    signs = axes.gather(1, axes.abs().argmax(1, keepdim=True)).sign()
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    points = (x - torch.from_numpy(pca.mean_)) @ axes.T
    if points.shape[1] < 2:
        points = torch.cat([points, torch.zeros_like(points)], 1)
    share = [float(v) for v in pca.explained_variance_ratio_]
    return points.float(), share + [0.0] * (2 - len(share))


def tsne_2d(x: torch.Tensor, seed: int) -> torch.Tensor:
    """t-SNE (scikit-learn) with the usual perplexity 30, lowered for small sets as it must be."""
    from sklearn.manifold import TSNE

    n = len(x)
    if n < 5:
        raise InputError(f"t-SNE needs at least 5 points, the split gave {n}; use --method pca")
    perplexity = min(30.0, (n - 1) / 3)
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x.double().numpy())
    return torch.from_numpy(points).float()


def kmeans(x: torch.Tensor, clusters: int, seed: int) -> torch.Tensor:
    from sklearn.cluster import KMeans

    clusters = min(clusters, len(x))
    return torch.from_numpy(KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(x.double().numpy())).long()


def adjusted_rand_index(a: torch.Tensor, b: torch.Tensor) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a.numpy(), b.numpy()))


@dataclass
class LatentMap:
    split: str
    method: str
    n_points: int
    latent_dim: int
    color_by: str
    clusters: int
    adjusted_rand_index: float | None   # k-means clusters against labels; None without labels
    explained_variance: list[float] | None  # PCA only
    label_names: list[str] | None       # the modality's names of the label ids, when it has them
    png: str                            # file names, beside the JSON
    csv: str


def _palette(count: int):
    from matplotlib import colormaps

    # Listed palettes give distinct colours by index; beyond 20 classes a continuous map.
    if count <= 10:
        return colormaps["tab10"]
    if count <= 20:
        return colormaps["tab20"]
    return colormaps["viridis"].resampled(count)


def draw(points: torch.Tensor, colors: torch.Tensor, names: list[str] | None, title: str, legend_title: str,
         path: Path) -> Path:
    from vaezoo.analysis.plotting import new_figure, save_png

    figure = new_figure(7, 6)
    ax = figure.subplots()
    ids = sorted(set(colors.tolist()))
    palette = _palette(len(ids))
    size = 4 if len(points) > 2000 else 12
    for i, c in enumerate(ids):
        keep = colors == c
        label = names[c] if names is not None and 0 <= c < len(names) else str(c)
        ax.scatter(points[keep, 0], points[keep, 1], s=size, alpha=0.7, color=palette(i), label=label, linewidths=0)
    if len(ids) <= 20:
        ax.legend(title=legend_title, fontsize=8, markerscale=2, loc="best")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_png(figure, path)


def write_points(path: Path, points: torch.Tensor, labels: torch.Tensor | None, clusters: torch.Tensor) -> Path:
    """The plotted points as CSV (x, y, label, cluster; label empty without labels)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["x", "y", "label", "cluster"])
        for i, (x, y) in enumerate(points.tolist()):
            out.writerow([f"{x:.6g}", f"{y:.6g}", "" if labels is None else int(labels[i]), int(clusters[i])])
    return path


def make_latent_map(run, *, split: str = "test", method: str = "pca", color_by: str | None = None,
                    clusters: int | None = None, max_examples: int | None = 2000, out_dir: Path | None = None,
                    seed: int = 0, echo=print) -> tuple[LatentMap, list[Path]]:
    """Encode ``split`` with the run's model, project, cluster, and write the three files."""
    from vaezoo.analysis.latents import encode_split

    if method not in METHODS:
        raise InputError(f"unknown projection {method!r}; expected one of {', '.join(METHODS)}")
    latents = encode_split(run, split, max_examples)
    labels = latents.label
    if color_by == "label" and labels is None:
        raise InputError(
            f"{run.path}: the {split} split carries no labels (its batches have no integer \"label\"); "
            "use --color-by cluster"
        )
    color_by = color_by or ("label" if labels is not None else "cluster")
    k = clusters or (len(torch.unique(labels)) if labels is not None else 10)
    assigned = kmeans(latents.mean, k, seed)
    ari = adjusted_rand_index(assigned, labels) if labels is not None else None
    share = None
    if method == "pca":
        points, share = pca_2d(latents.mean)
    else:
        echo(f"t-SNE of {len(latents)} points ...")
        points = tsne_2d(latents.mean, seed)
    folder = out_dir if out_dir is not None else run.path / FOLDER
    stem = folder / f"{split}-{method}"
    title = f"{run.recipe.name}: {METHODS[method]} of posterior means, {split} split, {len(points)} points"
    if ari is not None:
        title += f"\nk-means ({len(torch.unique(assigned))} clusters) vs labels: ARI {ari:.3f}"
    # The one call of the plugin's label_names: on the run's modality, after encoding the split,
    # only when its batches carry labels (names for the legend and the JSON).
    names = run.modality.label_names if labels is not None else None
    colors = labels if color_by == "label" and labels is not None else assigned  # label without labels: refused above
    png = draw(points, colors, names if color_by == "label" else None, title, color_by, stem.with_suffix(".png"))
    points_csv = write_points(stem.with_suffix(".csv"), points, labels, assigned)
    result = LatentMap(split, method, len(points), latents.mean.shape[1], color_by, int(len(torch.unique(assigned))),
                       ari, share, names, png.name, points_csv.name)
    write_json(stem.with_suffix(".json"), asdict(result))
    return result, [png, points_csv, stem.with_suffix(".json")]
