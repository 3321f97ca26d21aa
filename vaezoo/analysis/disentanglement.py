"""How disentangled a run's latent space is, against known factors of variation: the mutual
information gap (MIG, Chen et al. 2018) and DCI (disentanglement, completeness,
informativeness; Eastwood & Williams 2018).

The data must say what generated each example: batches carry ``"factors"``, ``[N, F]``, one
value per factor (e.g. the image plugin with ``data.factors = true`` on a set written by
``python -m vaezoo_image.shapes``); a modality may name the columns with a ``factor_names``
property. The codes are the posterior's point of each example (its mean; for a flow, the
flow of the base mean).

Which estimators (the metric functions below are pure: arrays in, numbers out):

- MIG is the discrete estimator of disentanglement_lib (``compute_mig``), not the sampled
  estimator of Chen et al.'s own code. Each code dimension is cut into ``bins`` (20)
  equal-width bins over its range; I(code_j; factor_k) is the plug-in mutual information of
  the binned code and the factor, in nats; per factor, the gap between the largest and the
  second largest I over the codes, divided by the factor's entropy H(factor_k); MIG is the
  mean over the factors that vary. A code that copies a factor of at most ``bins`` evenly
  spaced values scores 1 on it; a factor of more values (dSprites' 32 positions) cannot
  reach 1 with 20 bins, by construction.
- DCI: per factor a classifier predicts the factor's value from the codes on a training part
  (scikit-learn's GradientBoostingClassifier with its defaults, as disentanglement_lib; or
  a random forest, faster); its impurity-based feature importances form column k of the
  importance matrix R ``[D, F]``. Disentanglement = sum_j rho_j (1 - H_F(P_j.)) with P_jk =
  R_jk / sum_k R_jk and rho_j = sum_k R_jk / sum R (each code's share of the importance);
  completeness = sum_k rho_k (1 - H_D(P~_.k)) with P~_jk = R_jk / sum_j R_jk; entropies in
  base F and D, so both lie in [0, 1]. Informativeness is the classifiers' accuracy on the
  training part and on the held-out part (disentanglement_lib reports the same; Eastwood &
  Williams use a prediction error).

Factors are classes: whole-number columns by their distinct values, real-valued columns with
more than ``bins`` distinct values cut into ``bins`` equal-width bins like the codes.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from vaezoo.core.errors import InputError

if TYPE_CHECKING:
    import torch

FACTORS = "factors"           # the batch key
BINS = 20                     # disentanglement_lib's discretisation of the codes for MIG
DCI_MODELS = ("gbt", "forest")
JSON_NAME = "disentanglement.json"


# -- the batch convention ---------------------------------------------------------------------------


def batch_factors(batch: dict) -> torch.Tensor | None:
    """The batch's ``"factors"`` as ``[N, F]`` (a ``[N]`` tensor is one factor), or None."""
    import torch

    value = batch.get(FACTORS)
    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2) or value.is_complex():
        return None
    return value.unsqueeze(1) if value.dim() == 1 else value


# -- discrete information ---------------------------------------------------------------------------


def discretize(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each column of ``[N, D]`` cut into ``bins`` equal-width bins over its range: ids 1 ... bins
    (disentanglement_lib's histogram discretiser). A constant column falls into one bin."""
    codes = np.asarray(codes, dtype=np.float64)
    if not np.isfinite(codes).all():
        raise InputError("the codes are not all finite (a diverged model?); nothing to measure")
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def factor_classes(factors: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Class ids ``[N, F]`` (0 ... K-1 per column): whole-number columns by their distinct values,
    real-valued columns by theirs when at most ``bins``, else by ``bins`` equal-width bins."""
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    out = np.empty(factors.shape, dtype=np.int64)
    for k in range(factors.shape[1]):
        column = factors[:, k].astype(np.float64)
        if not np.isfinite(column).all():
            raise InputError(f"factor {k} has values that are not finite")
        distinct = np.unique(column)
        if len(distinct) > bins and not np.array_equal(column, np.round(column)):
            column = discretize(column[:, None], bins)[:, 0].astype(np.float64)
        out[:, k] = np.unique(column, return_inverse=True)[1].reshape(-1)
    return out


def entropy(labels: np.ndarray) -> float:
    """Plug-in entropy of discrete labels, in nats."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information of two discrete label arrays, in nats (what scikit-learn's
    ``mutual_info_score`` computes)."""
    ai = np.unique(np.asarray(a), return_inverse=True)[1].reshape(-1)
    bi = np.unique(np.asarray(b), return_inverse=True)[1].reshape(-1)
    na, nb = int(ai.max()) + 1, int(bi.max()) + 1
    joint = np.bincount(ai * nb + bi, minlength=na * nb).reshape(na, nb) / len(ai)
    outer = np.outer(joint.sum(1), joint.sum(0))
    nz = joint > 0
    return max(0.0, float((joint[nz] * (np.log(joint[nz]) - np.log(outer[nz]))).sum()))


# -- MIG --------------------------------------------------------------------------------------------


@dataclass
class MIG:
    score: float | None                     # mean gap over the factors that vary (None: none varies)
    per_factor: list[float | None]          # (largest - second largest MI) / H(factor); None: constant factor
    best_code: list[int]                    # the code dimension with the largest MI, per factor
    mutual_information: list[list[float]]   # [D][F], nats
    factor_entropy: list[float]             # [F], nats
    bins: int
    estimator: str = "discrete (disentanglement_lib): codes in equal-width bins, plug-in MI / H(factor)"


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> MIG:
    """The mutual information gap of codes ``[N, D]`` against factors ``[N, F]``."""
    binned = discretize(codes, bins)
    classes = factor_classes(factors, bins)
    d, f = binned.shape[1], classes.shape[1]
    mi = np.array([[mutual_information(binned[:, j], classes[:, k]) for k in range(f)] for j in range(d)]).reshape(d, f)
    h = np.array([entropy(classes[:, k]) for k in range(f)])
    ranked = np.sort(mi, axis=0)[::-1]
    second = ranked[1] if d > 1 else np.zeros(f)
    per_factor: list[float | None] = [float((ranked[0, k] - second[k]) / h[k]) if h[k] > 0 else None for k in range(f)]
    varying = [g for g in per_factor if g is not None]
    return MIG(float(np.mean(varying)) if varying else None, per_factor, [int(j) for j in mi.argmax(0)],
               mi.tolist(), h.tolist(), bins)


# -- DCI --------------------------------------------------------------------------------------------


def _classifier(model: str, seed: int):
    if model == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=seed)
    if model == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, max_features=None, random_state=seed)
    raise ValueError(f"unknown DCI model {model!r}; expected one of {', '.join(DCI_MODELS)}")


def fit_factor(model: str, seed: int, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
               y_test: np.ndarray) -> tuple[np.ndarray, float, float]:
    """One factor's classifier: (feature importances [D], train accuracy, test accuracy). A factor
    with one value in the training part needs no classifier: importances 0, the value predicted."""
    if len(np.unique(y_train)) < 2:
        constant = y_train[0]
        return np.zeros(x_train.shape[1]), float(np.mean(y_train == constant)), float(np.mean(y_test == constant))
    clf = _classifier(model, seed).fit(x_train, y_train)
    importance = np.abs(np.asarray(clf.feature_importances_, dtype=np.float64))
    return importance, float(np.mean(clf.predict(x_train) == y_train)), float(np.mean(clf.predict(x_test) == y_test))


def importance_matrix(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                      model: str = "gbt", seed: int = 0, jobs: int = 1) -> tuple[np.ndarray, list[float], list[float]]:
    """R ``[D, F]`` and the per-factor train and test accuracies; ``y`` are class ids ``[N, F]``.
    ``jobs`` > 1 fits the factors' classifiers in that many processes."""
    f = y_train.shape[1]
    args = [(model, seed, x_train, y_train[:, k], x_test, y_test[:, k]) for k in range(f)]
    if jobs > 1 and f > 1:
        from sklearn.utils.parallel import Parallel, delayed

        fits = Parallel(n_jobs=min(jobs, f))(delayed(fit_factor)(*a) for a in args)
    else:
        fits = [fit_factor(*a) for a in args]
    r = np.stack([fit[0] for fit in fits], 1)
    return r, [fit[1] for fit in fits], [fit[2] for fit in fits]


def _one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """1 - H(p_i) in base ``base`` for each row of nonnegative weights (normalised here)."""
    if base < 2:
        return np.ones(len(p))
    p = p + 1e-11
    p = p / p.sum(1, keepdims=True)
    return 1.0 + (p * np.log(p)).sum(1) / math.log(base)


def dci_disentanglement(r: np.ndarray) -> tuple[float, np.ndarray]:
    """(score, per code): how much each code is devoted to one factor, weighted by its importance."""
    r = np.asarray(r, dtype=np.float64)
    per_code = _one_minus_entropy(r, r.shape[1])
    weight = r.sum(1) / r.sum() if r.sum() > 0 else np.full(r.shape[0], 1.0 / r.shape[0])
    return float((per_code * weight).sum()), per_code


def dci_completeness(r: np.ndarray) -> tuple[float, np.ndarray]:
    """(score, per factor): how much each factor is captured by one code, weighted by its importance."""
    r = np.asarray(r, dtype=np.float64)
    per_factor = _one_minus_entropy(r.T, r.shape[0])
    weight = r.sum(0) / r.sum() if r.sum() > 0 else np.full(r.shape[1], 1.0 / r.shape[1])
    return float((per_factor * weight).sum()), per_factor


@dataclass
class DCI:
    disentanglement: float
    completeness: float
    informativeness_train: float          # mean accuracy of the factors' classifiers on the training part
    informativeness_test: float           # ... and on the held-out part
    disentanglement_per_code: list[float]
    completeness_per_factor: list[float]
    accuracy_train: list[float]           # per factor
    accuracy_test: list[float]
    importance: list[list[float]]         # R [D][F]
    model: str
    n_train: int
    n_test: int


def dci(codes: np.ndarray, factors: np.ndarray, *, model: str = "gbt", train: int = 2000, test: int = 1000,
        seed: int = 0, jobs: int = 1, bins: int = BINS) -> DCI:
    """DCI of codes ``[N, D]`` against factors ``[N, F]``: a seeded permutation gives ``train``
    examples to the classifiers and up to ``test`` others to measure them (with fewer than
    ``train + test`` examples, two thirds and one third)."""
    codes = np.asarray(codes, dtype=np.float64)
    classes = factor_classes(factors, bins)
    n = len(codes)
    if n < 3:
        raise InputError(f"DCI needs at least 3 examples (to train and to test), got {n}")
    if n < train + test:
        train = max(1, round(n * 2 / 3))
        test = n - train
    order = np.random.default_rng(seed).permutation(n)
    a, b = order[:train], order[train : train + test]
    r, acc_train, acc_test = importance_matrix(codes[a], classes[a], codes[b], classes[b], model=model, seed=seed, jobs=jobs)
    d_score, per_code = dci_disentanglement(r)
    c_score, per_factor = dci_completeness(r)
    return DCI(d_score, c_score, float(np.mean(acc_train)), float(np.mean(acc_test)), per_code.tolist(),
               per_factor.tolist(), acc_train, acc_test, r.tolist(), model, len(a), len(b))


# -- a run ------------------------------------------------------------------------------------------


def encode_with_factors(run, split: str, max_examples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The posterior points ``[N, D]`` of ``split`` and the factors ``[N, F]`` its batches carry."""
    import torch

    from vaezoo.core.batches import to_device
    from vaezoo.core.data import batches_in, split_batches
    from vaezoo.core.progress import progress

    size = run.recipe.eval.batch_size
    codes, factors = [], []
    batches = split_batches(run.modality, split, size, max_examples)
    def factors_of(batch: dict) -> torch.Tensor:
        values = batch_factors(batch)
        if values is None:
            raise InputError(
                f"{run.path}: the {split} data has no factor values (its batches carry no \"{FACTORS}\" [N, F]); "
                "disentanglement needs data generated from known factors, e.g. python -m vaezoo_image.shapes "
                "with data.factors = true"
            )
        return values

    first = next(batches, None)
    if first is None:
        raise InputError(f"{run.path}: the {split} split is empty; nothing to measure")
    factors_of(first)   # before the progress bar starts, so data without factors ends in one line
    with torch.no_grad():
        for batch in progress(itertools.chain([first], batches), desc="encoding",
                              total=batches_in(run.modality, split, size, max_examples)):
            values = factors_of(batch)
            q = run.vae.encode(to_device(batch, run.device))
            codes.append(getattr(q, "point", q.mean).float().cpu())
            factors.append(values.cpu())
    return torch.cat(codes).double().numpy(), torch.cat(factors).numpy()


@dataclass
class Disentanglement:
    split: str
    weights: str
    weights_step: int | None
    n_examples: int
    latent_dim: int
    factor_names: list[str]
    factor_values: list[int]              # distinct values (classes) of each factor in the measured examples
    mig: MIG
    dci: DCI | None
    codes: str = "posterior points (means)"
    seed: int = 0

    def table(self) -> list[tuple[str, str]]:
        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"

        rows = [("split", f"{self.split} ({self.n_examples} examples, {self.latent_dim} latent dimensions)"),
                ("weights", f"{self.weights} (step {self.weights_step})"),
                ("MIG", f"{num(self.mig.score)} (discrete, {self.mig.bins} bins)")]
        for k, name in enumerate(self.factor_names):
            rows.append((f"  {name}", f"{num(self.mig.per_factor[k])}  (z{self.mig.best_code[k]}, "
                                      f"{self.factor_values[k]} values)"))
        if self.dci is not None:
            d = self.dci
            rows += [("DCI disentanglement", num(d.disentanglement)),
                     ("DCI completeness", num(d.completeness)),
                     ("DCI informativeness", f"{num(d.informativeness_test)} test accuracy, "
                                             f"{num(d.informativeness_train)} train ({d.model}, {d.n_train}/{d.n_test} examples)")]
        return rows

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def measure_run(run, *, split: str = "test", max_examples: int | None = 10000, bins: int = BINS,
                dci_model: str | None = "gbt", dci_train: int = 2000, dci_test: int = 1000, seed: int = 0,
                jobs: int | None = None, echo: Callable[[str], Any] = print) -> Disentanglement:
    """Encode ``split`` with the run's model and measure MIG and (unless ``dci_model`` is None) DCI."""
    codes, factors = encode_with_factors(run, split, max_examples)
    names = getattr(run.modality, "factor_names", None)
    f = factors.shape[1]
    if not isinstance(names, list) or len(names) != f:
        names = [f"factor{k}" for k in range(f)]
    classes = factor_classes(factors, bins)
    values = [int(classes[:, k].max()) + 1 for k in range(f)]
    result_mig = mig(codes, factors, bins)
    result_dci = None
    if dci_model is not None:
        work = min(dci_train, len(codes))
        jobs = jobs if jobs is not None else (default_jobs() if work >= 500 else 1)
        echo(f"DCI: fitting {f} {dci_model} classifiers on {work} codes ...")
        result_dci = dci(codes, factors, model=dci_model, train=dci_train, test=dci_test, seed=seed, jobs=jobs, bins=bins)
    return Disentanglement(split, run.weights, run.weights_step, len(codes), codes.shape[1], [str(n) for n in names],
                           values, result_mig, result_dci, seed=seed)


def save(result: Disentanglement, path: Path) -> Path:
    from vaezoo.core.files import write_json

    write_json(path, result.as_dict())
    return path
