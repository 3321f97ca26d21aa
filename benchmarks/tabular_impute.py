"""Imputation side by side: the tabular VAE (vaezoo-tabular) against scikit-learn's imputers.

For each of scikit-learn's small real tables (wine, breast cancer, diabetes) and each seed,
20% of the cells are hidden completely at random. Every method sees the same table with
the same cells missing and fills them in:

- vae: the vaezoo-tabular plugin, trained by `vaezoo train` on all rows of the masked table
  (the imputation setting: the rows to impute are the training rows; latent 4, MLP 64-64,
  beta 1, 200 epochs), then `vaezoo_tabular.impute`: decoder means / class probabilities
  of 50 posterior draws, importance-weighted (MIWAE-style). The same model also imputes
  with equal weights (vae_uniform) and at the posterior mean (vae_posterior_mean, what
  `vaezoo reconstruct RUN table.csv` writes).
- mean: SimpleImputer(mean) for real columns, most frequent value for categorical ones.
- knn: KNNImputer(n_neighbors=5).
- iterative: IterativeImputer (BayesianRidge, max_iter=10).

The scikit-learn imputers get the real columns standardised with the observed cells'
mean and sd (as a StandardScaler in a pipeline would; KNN is scale-sensitive) and the
categorical columns as integer codes, rounded and clipped to a valid code afterwards.

Scores on the hidden cells only: `rmse` over real-valued cells, each column standardised
by the complete table's mean and sd so columns weigh alike; `error` = share of hidden
categorical cells given the wrong category. Categorical columns: diabetes `sex` (two
values) and the class target of wine and breast cancer; the diabetes target is a real column.

    nice .venv/bin/python benchmarks/tabular_impute.py                 # 3 tables x 3 seeds
    nice .venv/bin/python benchmarks/tabular_impute.py --tables wine --seeds 1 --set latent.dim=4

Prints one JSON line per table (mean and sd over seeds per method) and writes them to
benchmarks/results/tabular_impute.jsonl. Needs scikit-learn (`pip install vaezoo-tabular[benchmark]`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("vae", "mean", "knn", "iterative")


def load_table(name: str) -> tuple[list[str], np.ndarray, list[int]]:
    """(column names, values [rows, columns] as float, indices of categorical columns)."""
    from sklearn import datasets

    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)
        names = list(bunch.feature_names) + ["progression"]
        values = np.column_stack([bunch.data, bunch.target]).astype(float)
        # sex is coded 1/2 in the unscaled table: a category, not a quantity
        return names, values, [names.index("sex")]
    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[name]
    bunch = loader()
    names = [n.replace(" ", "_") for n in bunch.feature_names] + ["class"]
    values = np.column_stack([bunch.data, bunch.target]).astype(float)
    return names, values, [len(names) - 1]


def hide_cells(shape: tuple[int, int], fraction: float, seed: int) -> np.ndarray:
    """MCAR: a boolean matrix, True where a cell is hidden, each cell independently."""
    return np.random.default_rng(seed).random(shape) < fraction


def categories_as_codes(values: np.ndarray, categorical: list[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Categorical columns replaced by codes 0..K-1; returns the codes' original values."""
    out = values.copy()
    levels = {}
    for j in categorical:
        levels[j], out[:, j] = np.unique(values[:, j], return_inverse=True)
    return out, levels


def sklearn_impute(method: str, values: np.ndarray, hidden: np.ndarray, categorical: list[int], seed: int) -> np.ndarray:
    """Fill the hidden cells with one of scikit-learn's imputers; returns the whole table."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers IterativeImputer)
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    codes, levels = categories_as_codes(values, categorical)
    seen = np.where(hidden, np.nan, codes)
    real = [j for j in range(values.shape[1]) if j not in categorical]
    # standardise real columns with what is observed (what a scaler in a pipeline would learn)
    centre = np.nanmean(seen[:, real], axis=0)
    scale = np.nanstd(seen[:, real], axis=0)
    scale[scale == 0] = 1.0
    seen[:, real] = (seen[:, real] - centre) / scale
    if method == "mean":
        filled = SimpleImputer(strategy="mean").fit_transform(seen)
        if categorical:
            filled[:, categorical] = SimpleImputer(strategy="most_frequent").fit_transform(seen[:, categorical])
    elif method == "knn":
        filled = KNNImputer(n_neighbors=5).fit_transform(seen)
    elif method == "iterative":
        filled = IterativeImputer(max_iter=10, random_state=seed).fit_transform(seen)
    else:
        raise ValueError(f"unknown method {method!r}")
    filled[:, real] = filled[:, real] * scale + centre
    for j in categorical:
        code = np.clip(np.rint(filled[:, j]), 0, len(levels[j]) - 1).astype(int)
        filled[:, j] = levels[j][code]
    # the scaling round trip is not exact in floating point; observed cells stay as given
    return np.where(hidden, filled, values)


def score(truth: np.ndarray, filled: np.ndarray, hidden: np.ndarray, categorical: list[int]) -> dict[str, float]:
    """RMSE over hidden real cells (columns standardised by the complete table), error rate on hidden categorical cells."""
    real = [j for j in range(truth.shape[1]) if j not in categorical]
    sd = truth[:, real].std(axis=0)
    sd[sd == 0] = 1.0
    diff = (filled[:, real] - truth[:, real]) / sd
    out = {"rmse": float(np.sqrt(np.mean(diff[hidden[:, real]] ** 2)))}
    if categorical:
        cat_hidden = hidden[:, categorical]
        out["error"] = float(np.mean(filled[:, categorical][cat_hidden] != truth[:, categorical][cat_hidden]))
    return out


def summarise(table: str, per_seed: list[dict[str, dict[str, float]]], meta: dict) -> dict:
    """Mean and sd over seeds of every method's every score."""
    out = {"table": table, **meta, "methods": {}}
    for method in per_seed[0]:
        row = {}
        for key in per_seed[0][method]:
            xs = [s[method][key] for s in per_seed]
            row[key] = round(statistics.fmean(xs), 4)
            row[f"{key}_sd"] = round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0
        out["methods"][method] = row
    return out


def write_masked_csv(path: Path, names: list[str], values: np.ndarray, hidden: np.ndarray, categorical: list[int]) -> None:
    """The table as the plugin reads it: hidden cells empty, categories as integer text."""
    lines = [",".join(names)]
    for row, gone in zip(values, hidden):
        cells = ["" if g else (str(int(v)) if j in categorical else repr(float(v))) for j, (v, g) in enumerate(zip(row, gone))]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def vae_impute(names, values, hidden, categorical, seed: int, workdir: Path, overrides: list[str],
               draws: int) -> dict[str, np.ndarray]:
    """Train vaezoo-tabular on every row of the masked table (`vaezoo train`), then impute it."""
    import tomli_w
    from click.testing import CliRunner

    import vaezoo
    from vaezoo.cli import main
    from vaezoo_tabular import impute

    workdir.mkdir(parents=True, exist_ok=True)
    table = workdir / "masked.csv"
    write_masked_csv(table, names, values, hidden, categorical)
    recipe = {
        "modality": "tabular", "name": "impute", "seed": seed,
        "latent": {"dim": 4},
        "objective": {"kind": "elbo", "beta": 1.0, "kl_schedule": "linear", "kl_warmup_steps": 500},
        # threads 1: a model this small is faster on one thread, the more so on shared cores
        "train": {"epochs": 200, "batch_size": 32, "lr": 1e-3, "threads": 1, "tensorboard": False, "samples": 0},
        "eval": {"at_end": False},
        # the imputation setting: every row trains, validation and test are the training rows
        "data": {"path": table.name, "categorical": [names[j] for j in categorical],
                 "validation_fraction": 0.0, "test_fraction": 0.0},
        "model": {"hidden": [64, 64]},
    }
    (workdir / "recipe.toml").write_text(tomli_w.dumps(recipe))
    args = ["train", str(workdir / "recipe.toml"), "--run-dir", str(workdir / "run"), "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    result = CliRunner().invoke(main, args)
    if result.exit_code != 0:
        raise SystemExit(f"vaezoo train failed ({result.exit_code}):\n{result.output}")
    run = vaezoo.open_run(workdir / "run", device="cpu")
    # one trained model, three ways to impute: importance-weighted draws, equal-weight draws, the posterior mean
    ways = {"vae": (draws, "importance"), "vae_uniform": (draws, "uniform"), "vae_posterior_mean": (0, "uniform")}
    return {key: np.array([[float(c) for c in row] for row in impute(run, table, d, seed, weighting).rows])
            for key, (d, weighting) in ways.items()}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", nargs="+", default=["wine", "breast_cancer", "diabetes"],
                   choices=["wine", "breast_cancer", "diabetes"])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1: which cells are hidden, and the VAE's seed")
    p.add_argument("--fraction", type=float, default=0.2, help="share of cells hidden (MCAR)")
    p.add_argument("--draws", type=int, default=50, help="posterior draws the VAE averages when imputing")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override of the VAE's recipe (repeatable), e.g. latent.dim=8")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tabular_impute.jsonl")
    p.add_argument("--keep", type=Path, help="keep the VAE runs here (default: a temporary folder)")
    return p.parse_args()


def main() -> None:
    import tempfile
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    # IterativeImputer warns when 10 rounds do not converge; its result is still what it gives
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    args = parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        for name in args.tables:
            names, values, categorical = load_table(name)
            per_seed, seconds = [], {m: 0.0 for m in METHODS}
            for seed in range(args.seeds):
                hidden = hide_cells(values.shape, args.fraction, seed)
                start = time.perf_counter()
                filled = vae_impute(names, values, hidden, categorical, seed, work / f"{name}-{seed}", args.overrides,
                                    args.draws)
                seconds["vae"] += time.perf_counter() - start
                for method in METHODS[1:]:
                    start = time.perf_counter()
                    filled[method] = sklearn_impute(method, values, hidden, categorical, seed)
                    seconds[method] += time.perf_counter() - start
                per_seed.append({m: score(values, f, hidden, categorical) for m, f in filled.items()})
            meta = {"rows": values.shape[0], "columns": values.shape[1],
                    "categorical": [names[j] for j in categorical], "hidden_fraction": args.fraction,
                    "seeds": args.seeds, "vae_draws": args.draws, "vae_overrides": args.overrides,
                    "seconds": {m: round(s / args.seeds, 2) for m, s in seconds.items()}}
            line = json.dumps(summarise(name, per_seed, meta))
            print(line, flush=True)
            lines.append(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
