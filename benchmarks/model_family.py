"""The model family side by side (issue 13): priors, posteriors, objectives and the GMM sampler.

Every row trains its variants one after the other in this process, from the same recipe,
seed and budget (epochs, training images), and scores them with the same estimators:

- fmnist-mlp, fmnist-conv: recipes/fashion-mnist-mlp.toml and a conv recipe
  (recipes/fashion-mnist-quick.toml by default: --conv-recipe fashion-mnist-conv takes the
  binarized residual net, whose k = 200 evaluation costs about 6x more on CPU), each as
  - standard: N(0, I) prior, diagonal posterior (the recipe as it is)
  - mog: a learned mixture of --mog-components Gaussians as prior
  - vamp: the VampPrior with --vamp-components pseudo-inputs
  - iaf: an inverse autoregressive flow of --flow-steps MADEs on the encoder's Gaussian
  - vamp+iaf: both.
  Figures: test IW-NLL (k importance samples on the first --*-test-examples test images,
  `vaezoo eval`'s path: evaluate_split on the best weights), ELBO, KL (closed form for
  standard, else the one-sample estimate log q(z|x) - log p(z)), active units and MI
  (measured on the base Gaussian for an IAF), training seconds. Both recipes put a
  Bernoulli on [0, 1] intensities (no binarization), so their "NLL" is a cross-entropy
  in nats per image, not a likelihood of binary images (fashion-mnist-conv's is).
  Sample quality "FID-FMNIST": the Frechet distance between Gaussians fitted to features of
  10,000 test images and of 10,000 decoded samples (the decoder's mean image), the
  features being the 128-unit penultimate layer of a small CNN classifier that
  benchmarks/fid_fmnist.py trains once on the 60,000 Fashion-MNIST training images and caches
  in benchmarks/.cache/ (safetensors). The matrix square root comes from two symmetric
  eigen-decompositions: Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2). For each model:
  fid_prior (z from the model's prior: N(0, I), the mixture, the VampPrior), fid_gmm (z from
  the GMM sampler, `vaezoo sample --sampler gmm`'s mixture: 10 full-covariance components
  on the posterior points of at most 20,000 training images) and fid_recon (the test images'
  own reconstructions: what the decoder can do from codes it was trained on, a floor for
  both samplers). The summary holds the distance of 10,000 training images to the test
  images (the floor of the measure at this sample size) and the classifier's test accuracy.
- shapes: recipes/shapes-quick.toml on the generated dSprites-like set (written once to
  benchmarks/.cache/shapes-32 by `python -m vaezoo_image.shapes`): the plain VAE (elbo,
  beta 1), beta-VAE (elbo, beta 4) and beta-TCVAE (beta 6 on the total correlation), scored
  by `vaezoo disentanglement RUN` (MIG, DCI disentanglement, completeness, informativeness)
  with ELBO, reconstruction, KL and active units of the test images beside.
- text: recipes/wordnet-quick.toml as it is (free bits 0.25), the same with free bits off,
  and a mog prior (free bits need the closed-form KL, which a mixture prior has not, so that
  recipe sets them to 0: its fair twin is the second row). Perplexity from the IW-NLL, KL,
  MI and active units of the test sentences.

    make bench-models                                               # every row, about 75 minutes on 2 busy cores
    .venv/bin/python benchmarks/model_family.py --rows fmnist-mlp --mlp-epochs 2 --fid-examples 2000
    .venv/bin/python benchmarks/model_family.py --rows fmnist-conv --variants standard,vamp
    .venv/bin/python benchmarks/model_family.py --rows shapes --shapes-epochs 5
    .venv/bin/python benchmarks/model_family.py --rows text --text-max-steps 600

Prints one JSON line per trained model and a summary line, and writes the same lines to
benchmarks/results/model_family.jsonl (--out; rewritten after every model, so an interrupted
run keeps what it finished). Progress goes to stderr. Run directories go under
benchmarks/.runs/model_family/ROW/VARIANT (ignored by git; --work), replaced on every run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fid_fmnist import (CACHE, FMNISTNet, decoded_means, feature_network, features,  # noqa: E402
                        frechet_distance, gaussian_stats, prior_samples, reconstructions, references)
from fresh_runs import fresh_run  # noqa: E402
from results_log import ResultsFile, add_run_options, chosen, eval_figures, logger, r4  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
log = logger("model_family")
RESULTS = ROOT / "benchmarks" / "results" / "model_family.jsonl"
ROWS = ("fmnist-mlp", "fmnist-conv", "shapes", "text")
IMAGE_VARIANTS = ("standard", "mog", "vamp", "iaf", "vamp+iaf")
SHAPES_VARIANTS = {   # name: [objective] overrides
    "vae": ['objective.kind="elbo"', "objective.beta=1.0"],
    "beta-vae": ['objective.kind="elbo"', "objective.beta=4.0"],
    "beta-tcvae": ['objective.kind="beta-tcvae"', "objective.beta=6.0"],
}
TEXT_VARIANTS = ("standard", "standard-fb0", "mog")


# -- runs ---------------------------------------------------------------------------------------------


def train(label: str, recipe_path: Path, overrides: list[str], run_dir: Path) -> tuple[object, dict]:
    """Train one model from scratch in ``run_dir``; returns the fit's result and its timings."""
    from vaezoo.plugin.recipes import load_recipe

    log(f"{label}: {' '.join(overrides)}")
    t = fresh_run(label, load_recipe(recipe_path, overrides), run_dir, log)
    return t.result, {"train_seconds": round(t.train_seconds, 1), "fit_seconds": round(t.fit_seconds, 1)}


def common_overrides(args: argparse.Namespace) -> list[str]:
    return [f"seed={args.seed}", f"train.threads={args.threads}", "train.samples=0", "train.tensorboard=false",
            "eval.at_end=false", 'train.device="cpu"']


# -- Fashion-MNIST rows ---------------------------------------------------------------------------------


def image_variant_overrides(variant: str, args: argparse.Namespace) -> list[str]:
    out = []
    if "mog" in variant:
        out += ['prior.kind="mog"', f"prior.components={args.mog_components}"]
    if "vamp" in variant:
        out += ['prior.kind="vamp"', f"prior.components={args.vamp_components}"]
    if "iaf" in variant:
        out += ['posterior.kind="iaf"', f"posterior.flow_steps={args.flow_steps}"]
    return out


def fmnist_budget(row: str, args: argparse.Namespace) -> tuple[Path, list[str], int, int]:
    """The row's recipe, its budget overrides, and (k, test examples) of the evaluation."""
    if row == "fmnist-mlp":
        recipe = ROOT / "recipes" / "fashion-mnist-mlp.toml"
        epochs, train_examples, k, n = args.mlp_epochs, args.mlp_train_examples, args.k, args.mlp_test_examples
    else:
        recipe = ROOT / "recipes" / f"{args.conv_recipe}.toml"
        epochs, train_examples, k, n = args.conv_epochs, args.conv_train_examples, args.k, args.conv_test_examples
    overrides = [f"train.epochs={epochs}", f"data.max_train_examples={train_examples}", "train.val_max_examples=2000"]
    if row == "fmnist-conv" and args.conv_recipe == "fashion-mnist-conv":
        # The full recipe's 5,000-step KL warm-up and 500-step LR warm-up would outlast a short
        # budget: scale both to it (a third and a twentieth of the steps), no early stopping.
        from vaezoo.plugin.recipes import load_recipe

        r = load_recipe(recipe, [])
        n_train = train_examples or 54_000
        steps = epochs * math.ceil(n_train / r.train.batch_size)
        overrides += [f"objective.kl_warmup_steps={max(1, steps // 3)}", f"train.warmup_steps={steps // 20}",
                      "train.early_stopping_patience=0"]
    return recipe, overrides, k, n


def fmnist_row(row: str, args: argparse.Namespace, net: FMNISTNet, reference, emit) -> list[dict]:
    from vaezoo.analysis.samplers import gmm_for_run
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.runs import open_run

    recipe, budget, k, n_test = fmnist_budget(row, args)
    records = []
    for variant in args.variants:
        label = f"{row}/{variant}"
        overrides = common_overrides(args) + budget + image_variant_overrides(variant, args)
        result, timings = train(label, recipe, overrides, args.work / row / variant)
        run = open_run(args.work / row / variant, device="cpu")
        log(f"{label}: test IW-NLL (k={k}, {n_test} images)")
        started = time.perf_counter()
        e = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=k, max_examples=n_test,
                           show_progress=False)
        eval_seconds = time.perf_counter() - started
        log(f"{label}: IW-NLL {e.iw_nll:.2f}; samples for FID-FMNIST")
        started = time.perf_counter()
        fid = {"fid_prior": frechet_distance(gaussian_stats(features(net, prior_samples(run.vae, args.fid_examples, args.seed))), reference)}
        fit_started = time.perf_counter()
        mixture, _ = gmm_for_run(run, echo=lambda msg: log(f"{label}: {msg}"))
        gmm_fit_seconds = time.perf_counter() - fit_started
        z = mixture.sample(args.fid_examples, generator=torch.Generator().manual_seed(args.seed))
        fid["fid_gmm"] = frechet_distance(gaussian_stats(features(net, decoded_means(run.vae, z))), reference)
        fid["fid_recon"] = frechet_distance(gaussian_stats(features(net, reconstructions(run, args.fid_examples))), reference)
        record = {
            "row": row, "variant": variant, "recipe": str(recipe.relative_to(ROOT)),
            "prior": run.recipe.prior.kind, "posterior": run.recipe.posterior.kind,
            "prior_components": run.recipe.prior.components if run.recipe.prior.kind != "standard" else None,
            "flow_steps": run.recipe.posterior.flow_steps if run.recipe.posterior.kind == "iaf" else None,
            "overrides": budget + image_variant_overrides(variant, args),
            "epochs": run.recipe.train.epochs, "train_examples": len(run.modality.dataset("train")),
            "steps": result.steps, "weights": run.weights, "weights_step": run.weights_step,
            "parameters": sum(p.numel() for p in run.vae.parameters()),
            **eval_figures(e),
            **{key: round(value, 3) for key, value in fid.items()},
            "fid_examples": args.fid_examples,
            "gmm_components": mixture.components, "gmm_examples": int(mixture.metadata["examples"]),
            "gmm_converged": mixture.metadata["converged"] == "true",
            **timings, "eval_seconds": round(eval_seconds, 1), "gmm_fit_seconds": round(gmm_fit_seconds, 1),
            "fid_seconds": round(time.perf_counter() - started, 1),
        }
        records.append(record)
        emit(record)
        del run
    return records


# -- shapes ---------------------------------------------------------------------------------------------


def shapes_data(args: argparse.Namespace) -> Path:
    folder = CACHE / "shapes-32"
    if not (folder / "factors.json").exists():
        log(f"writing the shapes set to {folder.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "vaezoo_image.shapes", str(folder), "--size", "32"], check=True,
                       stdout=sys.stderr)
    return folder


def shapes_row(args: argparse.Namespace, emit) -> list[dict]:
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.runs import open_run

    folder = shapes_data(args)
    recipe = ROOT / "recipes" / "shapes-quick.toml"
    budget = [f"data.path=\"{folder}\""] + ([f"train.epochs={args.shapes_epochs}"] if args.shapes_epochs else [])
    vaezoo = Path(sys.executable).parent / "vaezoo"
    records = []
    for variant, objective in SHAPES_VARIANTS.items():
        if variant not in args.shapes_variants:
            continue
        label = f"shapes/{variant}"
        run_dir = args.work / "shapes" / variant
        result, timings = train(label, recipe, common_overrides(args) + budget + objective, run_dir)
        run = open_run(run_dir, device="cpu")
        e = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=0, show_progress=False)
        log(f"{label}: vaezoo disentanglement")
        started = time.perf_counter()
        out = run_dir / "disentanglement.json"
        subprocess.run([str(vaezoo), "disentanglement", str(run_dir), "--json", str(out), "--no-progress",
                        "--seed", str(args.seed), "--jobs", str(args.jobs)],
                       check=True, stdout=sys.stderr, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        d = json.loads(out.read_text())
        figures = eval_figures(e)
        record = {
            "row": "shapes", "variant": variant, "recipe": str(recipe.relative_to(ROOT)),
            "objective": run.recipe.objective.kind, "beta": run.recipe.objective.beta,
            "overrides": budget[1:] + objective, "epochs": run.recipe.train.epochs,
            "train_examples": len(run.modality.dataset("train")), "steps": result.steps,
            "weights": run.weights, "weights_step": run.weights_step,
            **{key: figures[key] for key in ("test_examples", "elbo", "reconstruction", "kl", "active_units", "latent_dim")},
            **disentanglement_figures(d),
            **timings, "disentanglement_seconds": round(time.perf_counter() - started, 1),
        }
        records.append(record)
        emit(record)
    return records


def disentanglement_figures(d: dict) -> dict:
    """The headline numbers of disentanglement.json, with MIG per factor."""
    dci = d.get("dci") or {}
    return {
        "mig": r4(d["mig"]["score"]),
        "mig_per_factor": dict(zip(d["factor_names"], [r4(x) for x in d["mig"]["per_factor"]])),
        "mig_best_code": dict(zip(d["factor_names"], d["mig"]["best_code"])),
        "dci_disentanglement": r4(dci.get("disentanglement")),
        "dci_completeness": r4(dci.get("completeness")),
        "dci_informativeness_test": r4(dci.get("informativeness_test")),
        "dci_informativeness_train": r4(dci.get("informativeness_train")),
        "dci_model": dci.get("model"),
        "disentanglement_examples": d["n_examples"],
    }


# -- text -------------------------------------------------------------------------------------------------


def text_row(args: argparse.Namespace, emit) -> list[dict]:
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.runs import open_run

    recipe = ROOT / "recipes" / "wordnet-quick.toml"
    budget = [f"train.max_steps={args.text_max_steps}"] if args.text_max_steps else []
    variants = {"standard": [], "standard-fb0": ["objective.free_bits=0"],
                "mog": ["objective.free_bits=0", 'prior.kind="mog"', f"prior.components={args.mog_components}"]}
    records = []
    for variant, extra in variants.items():
        if variant not in args.text_variants:
            continue
        label = f"text/{variant}"
        run_dir = args.work / "text" / variant
        result, timings = train(label, recipe, common_overrides(args) + budget + extra, run_dir)
        run = open_run(run_dir, device="cpu")
        log(f"{label}: test IW-NLL (k={args.text_k})")
        started = time.perf_counter()
        e = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=args.text_k,
                           max_examples=args.text_test_examples or 10**9, show_progress=False)
        record = {
            "row": "text", "variant": variant, "recipe": str(recipe.relative_to(ROOT)),
            "prior": run.recipe.prior.kind, "free_bits": run.recipe.objective.free_bits,
            "overrides": budget + extra, "epochs": run.recipe.train.epochs, "max_steps": run.recipe.train.max_steps,
            "train_examples": len(run.modality.dataset("train")), "steps": result.steps,
            "weights": run.weights, "weights_step": run.weights_step,
            **eval_figures(e),
            "perplexity": r4(e.extra.get("perplexity")), "perplexity_elbo": r4(e.extra.get("perplexity_elbo")),
            "tokens_per_sentence": r4(e.extra.get("tokens_per_sentence")),
            **timings, "eval_seconds": round(time.perf_counter() - started, 1),
        }
        records.append(record)
        emit(record)
    return records


# -- summary ----------------------------------------------------------------------------------------------


def summarise(records: list[dict], extra: dict) -> dict:
    summary: dict = {"summary": True, **extra}
    for row in ("fmnist-mlp", "fmnist-conv"):
        rows = {r["variant"]: r for r in records if r["row"] == row}
        if not rows:
            continue
        base = rows.get("standard")
        summary[row] = {
            "best_iw_nll": min(rows.values(), key=lambda r: r["iw_nll"])["variant"],
            "best_fid_prior": min(rows.values(), key=lambda r: r["fid_prior"])["variant"],
            "best_fid_gmm": min(rows.values(), key=lambda r: r["fid_gmm"])["variant"],
            "iw_nll_minus_standard": {v: round(r["iw_nll"] - base["iw_nll"], 3) for v, r in rows.items()} if base else None,
            "fid_gmm_minus_fid_prior": {v: round(r["fid_gmm"] - r["fid_prior"], 3) for v, r in rows.items()},
            "gmm_lowers_fid": sum(r["fid_gmm"] < r["fid_prior"] for r in rows.values()),
            "models": len(rows),
        }
    shapes = {r["variant"]: r for r in records if r["row"] == "shapes"}
    if shapes:
        summary["shapes"] = {v: {k: r.get(k) for k in ("mig", "dci_disentanglement", "dci_completeness")} for v, r in shapes.items()}
    text = {r["variant"]: r for r in records if r["row"] == "text"}
    if text:
        summary["text"] = {v: {k: r.get(k) for k in ("perplexity", "kl", "mutual_information", "active_units")}
                           for v, r in text.items()}
    return summary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--variants", default=",".join(IMAGE_VARIANTS), help="Fashion-MNIST variants, comma-separated")
    p.add_argument("--shapes-variants", default=",".join(SHAPES_VARIANTS))
    p.add_argument("--text-variants", default=",".join(TEXT_VARIANTS))
    p.add_argument("--mlp-epochs", type=int, default=10)
    p.add_argument("--mlp-train-examples", type=int, default=0, help="0 = all 54,000")
    p.add_argument("--mlp-test-examples", type=int, default=2000, help="first N test images of the IW-NLL")
    p.add_argument("--conv-recipe", default="fashion-mnist-quick", choices=["fashion-mnist-quick", "fashion-mnist-conv"])
    p.add_argument("--conv-epochs", type=int, default=3)
    p.add_argument("--conv-train-examples", type=int, default=0, help="0 = all 54,000")
    p.add_argument("--conv-test-examples", type=int, default=1000)
    p.add_argument("-k", type=int, default=200, help="importance samples of the test IW-NLL (Fashion-MNIST)")
    p.add_argument("--mog-components", type=int, default=10)
    p.add_argument("--vamp-components", type=int, default=100)
    p.add_argument("--flow-steps", type=int, default=2)
    p.add_argument("--fid-examples", type=int, default=10_000, help="samples and test images of FID-FMNIST")
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--shapes-epochs", type=int, default=0, help="0 = the recipe's 10")
    p.add_argument("--text-max-steps", type=int, default=0, help="0 = the recipe's 2 epochs")
    p.add_argument("--text-k", type=int, default=50, help="importance samples of the text IW-NLL (50 as text_vs_lm's quick rows)")
    p.add_argument("--text-test-examples", type=int, default=0, help="0 = all 2,226 test sentences")
    p.add_argument("--jobs", type=int, default=2, help="processes fitting DCI's classifiers")
    add_run_options(p, "model_family", RESULTS)
    args = p.parse_args()
    for name, allowed in (("rows", ROWS), ("variants", IMAGE_VARIANTS), ("shapes_variants", tuple(SHAPES_VARIANTS)),
                          ("text_variants", TEXT_VARIANTS)):
        setattr(args, name, chosen(p, f"--{name.replace('_', '-')}", getattr(args, name), allowed))
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from vaezoo.core.progress import progress_bars

    results = ResultsFile(args.out, "model_family.py", args.threads, args.seed)
    with progress_bars(False):
        run_rows(args, results.info, results.emit)
    results.finish(summarise)


def run_rows(args: argparse.Namespace, extra: dict, emit) -> None:
    fmnist_rows = [row for row in args.rows if row.startswith("fmnist")]
    if fmnist_rows:
        net, meta = feature_network(args.classifier_epochs, args.seed, echo=log)
        reference, train_vs_test = references(net, args.fid_examples, args.seed)
        extra["fid_classifier"] = {"test_accuracy": float(meta["test_accuracy"]), "epochs": int(meta["epochs"]),
                                   "train_seconds": float(meta["train_seconds"]), "cached": meta["cached"]}
        extra["fid_train_vs_test"] = round(train_vs_test, 3)
        extra["fid_examples"] = args.fid_examples
        log(f"FID-FMNIST of {args.fid_examples} training images against the test images: {extra['fid_train_vs_test']:.3f}")
        for row in fmnist_rows:
            fmnist_row(row, args, net, reference, emit)
    if "shapes" in args.rows:
        shapes_row(args, emit)
    if "text" in args.rows:
        text_row(args, emit)


if __name__ == "__main__":
    main()
