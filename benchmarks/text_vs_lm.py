"""Side-by-side: the LSTM sentence VAE against an LSTM language model of the same size.

Both recipes read the same corpus with the same split seed and tokenizer settings, so the
two runs see the same training, validation and test sentences and the same vocabulary
(checked below). They train for the same budget (epochs, or --max-steps) and are scored
by the core's estimators on the same test sentences:

- iw_nll: importance-weighted -log p(x) per sentence with k samples (nats). For the LM
  the decoder ignores z and the KL goes to 0, so this is its exact NLL; for the VAE it is an
  upper bound (in expectation) that tightens as k grows, so the comparison is conservative
  for the VAE. At the quick size k=50 -> 500 lowered the VAE's by 0.086 nats per sentence.
- perplexity: exp(IW-NLL total / predicted tokens), EOS included.
- kl, active_units, mutual_information: the collapse diagnostics (all near 0 for the LM).
  The MI is over the aggregate posterior of the whole test set (at most 10,000 sentences),
  so it lies in [0, log N]; mutual_information_bound is that log N. Rows in results/ written
  before that change averaged a per-batch estimate (which could dip below 0: the LM's -0.125).

    .venv/bin/python benchmarks/text_vs_lm.py                          # the recipes' own budget
    .venv/bin/python benchmarks/text_vs_lm.py --epochs 1 --max-steps 300 --test-examples 500
    .venv/bin/python benchmarks/text_vs_lm.py --set-vae objective.free_bits=0.5 --only vae
    .venv/bin/python benchmarks/text_vs_lm.py --aggressive 15     # adds a third row: the VAE with aggressive updates
    # the quick-size pair: the LM is the quick recipe with z switched off
    .venv/bin/python benchmarks/text_vs_lm.py --vae recipes/wordnet-quick.toml --lm recipes/wordnet-quick.toml \
        --set-lm model.use_latent=false --set-lm objective.free_bits=0 --set-lm objective.kl_schedule=constant

Prints one JSON line per model, then one comparing them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vae", type=Path, default=ROOT / "recipes" / "wordnet-lstm-vae.toml", help="the VAE recipe")
    p.add_argument("--lm", type=Path, default=ROOT / "recipes" / "wordnet-lstm-lm.toml", help="the LM recipe")
    p.add_argument("--epochs", type=int, help="training epochs for both (default: each recipe's)")
    p.add_argument("--max-steps", type=int, help="cap on optimiser steps for both (default: each recipe's)")
    p.add_argument("--iw-samples", type=int, default=100, help="importance samples k for the test IW-NLL")
    p.add_argument("--test-examples", type=int, default=0, help="score the first N test sentences (0 = all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="recipe override applied to both runs (repeatable)")
    p.add_argument("--set-vae", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for the VAE only")
    p.add_argument("--set-lm", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override for the LM only")
    p.add_argument("--only", choices=["vae", "lm", "vae-aggressive"], help="train one of them")
    p.add_argument("--aggressive", type=int, metavar="MAX_INNER",
                   help="also train the VAE with aggressive encoder updates (He et al. 2019), at most MAX_INNER "
                        "encoder steps before each decoder step")
    p.add_argument("--out", type=Path, help="keep the run directories here (default: a temporary folder)")
    return p.parse_args()


def budget_overrides(args: argparse.Namespace) -> list[str]:
    out = [f"eval.iw_samples={args.iw_samples}", f"eval.max_examples={args.test_examples}",
           "eval.split=\"test\"", "train.tensorboard=false"]
    if args.epochs is not None:
        out.append(f"train.epochs={args.epochs}")
    if args.max_steps is not None:
        out.append(f"train.max_steps={args.max_steps}")
    return out + list(args.overrides)


def train_one(label: str, recipe_path: Path, overrides: list[str], run_dir: Path) -> dict:
    from vaezoo.plugin.recipes import load_recipe
    from vaezoo.train.trainer import Trainer

    recipe = load_recipe(recipe_path, overrides)
    started = time.perf_counter()
    result = Trainer(recipe, run_dir, progress_bar=False, echo=lambda msg: print(f"[{label}] {msg}", file=sys.stderr)).fit()
    seconds = time.perf_counter() - started
    e = result.eval
    return {
        "model": label,
        "recipe": str(recipe_path.relative_to(ROOT) if recipe_path.is_relative_to(ROOT) else recipe_path),
        "overrides": overrides,
        "steps": result.steps,
        "train_and_eval_seconds": round(seconds, 1),
        "test_sentences": e.n_examples,
        "iw_samples": e.iw_samples,
        "iw_nll": e.iw_nll,
        "perplexity": e.extra.get("perplexity"),
        "elbo": e.elbo,
        "perplexity_elbo": e.extra.get("perplexity_elbo"),
        "kl": e.kl,
        "active_units": e.active_units,
        "latent_dim": len(e.kl_per_dim),
        "mutual_information": e.mutual_information,
        "mutual_information_bound": e.mutual_information_bound,
        "tokens_per_sentence": e.extra.get("tokens_per_sentence"),
        "run_dir": str(run_dir),
    }


def main() -> None:
    args = parse_args()
    base = budget_overrides(args)
    root = args.out or Path(tempfile.mkdtemp(prefix="text_vs_lm-"))
    jobs = [("vae", args.vae, base + list(args.set_vae)), ("lm", args.lm, base + list(args.set_lm))]
    if args.aggressive:
        jobs.append(("vae-aggressive", args.vae, base + list(args.set_vae) + [
            "train.aggressive_encoder=true", f"train.aggressive_max_inner={args.aggressive}"]))
    rows = {}
    for label, recipe, overrides in jobs:
        if args.only and label != args.only:
            continue
        rows[label] = train_one(label, recipe, overrides, root / label)
        print(json.dumps(rows[label]), flush=True)
    for label in ("vae", "vae-aggressive"):
        if label not in rows or "lm" not in rows:
            continue
        vae, lm = rows[label], rows["lm"]
        print(json.dumps({
            "comparison": f"{label} - lm",
            "same_tokenizer": (root / label / "tokenizer.json").read_bytes() == (root / "lm" / "tokenizer.json").read_bytes(),
            "iw_nll_difference": vae["iw_nll"] - lm["iw_nll"],
            "perplexity_ratio": vae["perplexity"] / lm["perplexity"],
            "target_met": bool(vae["perplexity"] <= lm["perplexity"] and vae["active_units"] >= 8
                               and vae["mutual_information"] >= 2.0),
        }), flush=True)

if __name__ == "__main__":
    main()
