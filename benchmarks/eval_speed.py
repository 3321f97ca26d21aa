"""Importance-weighted evaluation against training, per modality: latents decoded per second
by ``iw_log_likelihood`` against examples per second of a training step.

For each row a run is trained for one step from its quick recipe (speed does not depend on
the weights), and three things are timed on it, interleaved (--repeats rounds, medians), so a
busy machine slows all alike:

- train: a training step (the recipe's objective forward, backward, gradient clipping when
  the recipe asks, an optimiser step) at the recipe's batch size, --train-steps per round;
  ``examples_per_second``;
- one_call_per_chunk: ``iw_log_likelihood`` decoding a whole chunk (the recipe's
  ``[eval] chunk_size`` samples of every example of an ``[eval] batch_size`` batch) per
  decoder call, as it did before blocks; ``latents_per_second`` = examples * k / seconds;
- blocked: the same with the default decoder blocks (on a CPU, sized to keep the decoder's
  largest activation near ``CPU_ACTIVATION_ELEMENTS``).

Both IW variants draw the same latents (the same seed); ``max_abs_difference`` is the largest
difference of their per-example estimates. ``rows_per_call`` lists the distinct numbers
of latents the decoder got per call. ``blocked_over_train`` is latents per second over training examples per
second: how much faster a decoded latent is than a trained example.

    make bench-eval                                       # every row, about 4 minutes on 2 cores
    .venv/bin/python benchmarks/eval_speed.py --rows image --k 100 --repeats 2

Prints one JSON line per row and a summary, and writes them to
benchmarks/results/eval_speed.jsonl (--out). Runs go to benchmarks/.runs/eval_speed/.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import ROWS, one_step_run  # noqa: E402
from results_log import ResultsFile, add_run_options, logger, parse_run_args, r4  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "eval_speed.jsonl"

log = logger("eval_speed")


def seconds(call: Callable[[], object], times: int = 1) -> float:
    """Wall-clock seconds of one call, the mean of ``times`` calls in a row."""
    started = time.perf_counter()
    for _ in range(times):
        call()
    return (time.perf_counter() - started) / times


def calls_for(call: Callable[[], object], least: float) -> int:
    """How many calls in a row last at least ``least`` seconds (a tiny model's are too short to time alone)."""
    return max(1, math.ceil(least / max(seconds(call), 1e-6)))


def rows_per_call(vae, call: Callable[[], object]) -> list[int]:
    """The distinct numbers of latents the decoder got per call while ``call`` ran."""
    seen: list[int] = []
    handle = vae.decoder.register_forward_pre_hook(lambda module, inputs: seen.append(len(inputs[0])))
    try:
        call()
    finally:
        handle.remove()
    return sorted(set(seen))


def train_step(run, args: argparse.Namespace) -> Callable[[], None]:
    """One call: --train-steps training steps of a copy of the run's VAE on training batches."""
    from vaezoo.core.data import dataset_length, split_batches
    from vaezoo.core.objectives import build_objective
    from vaezoo.train.optim import make_optimizer

    cfg = run.recipe.train
    vae = copy.deepcopy(run.vae).train()
    objective = build_objective(run.recipe.objective.kind, vae, run.recipe.objective,
                                dataset_size=dataset_length(run.modality.dataset("train")))
    optimizer = make_optimizer(vae.parameters(), cfg)
    batches = list(split_batches(run.modality, "train", cfg.batch_size, cfg.batch_size * args.train_steps))

    def steps() -> None:
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            objective(batch, beta=1.0).loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
            optimizer.step()
    return steps


def speed_row(row: str, args: argparse.Namespace) -> dict:
    from vaezoo.core.data import split_batches
    from vaezoo.core.estimators import iw_log_likelihood
    from vaezoo.train.runs import open_run

    run = open_run(one_step_run(row, args), device="cpu")
    vae, ev = run.vae.eval(), run.recipe.eval
    batches = list(split_batches(run.modality, "test", ev.batch_size, args.examples))
    examples = sum(len(b["x"]) for b in batches)

    def iw(rows: int | None) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            torch.manual_seed(args.seed)
            return torch.cat([iw_log_likelihood(vae, b, args.k, chunk_size=ev.chunk_size, rows=rows) for b in batches])
        return call

    variants = {"one_call_per_chunk": iw(ev.chunk_size * ev.batch_size), "blocked": iw(None)}
    calls = {"train": train_step(run, args), **variants}
    calls["train"]()                                    # warm-up: allocations, the optimiser's state
    estimates = {name: call() for name, call in variants.items()}
    repeat = {name: calls_for(call, args.least_seconds) for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(args.repeats):
        for name, call in calls.items():
            times[name].append(seconds(call, repeat[name]))
        log(f"{row} round {i + 1}/{args.repeats}: " + ", ".join(f"{n} {1000 * t[-1]:.1f} ms" for n, t in times.items()))
    train_speed = run.recipe.train.batch_size * args.train_steps / statistics.median(times["train"])
    record: dict = {"row": row, "recipe": ROWS[row][0], "latent_dim": vae.latent_dim,
                    "train": {"batch_size": run.recipe.train.batch_size, "objective": run.recipe.objective.kind,
                              "examples_per_second": round(train_speed, 1)},
                    "iw": {"examples": examples, "k": args.k, "batch_size": ev.batch_size, "chunk_size": ev.chunk_size}}
    for name, call in variants.items():
        latents = examples * args.k / statistics.median(times[name])
        record[name] = {"latents_per_second": round(latents, 1), "rows_per_call": rows_per_call(vae, call),
                        "over_train": r4(latents / train_speed)}
    record["blocked_speedup"] = r4(record["blocked"]["latents_per_second"] / record["one_call_per_chunk"]["latents_per_second"])
    record["max_abs_difference"] = float((estimates["blocked"] - estimates["one_call_per_chunk"]).abs().max())
    return record


def summarise(records: list[dict], info: dict) -> dict:
    return {"summary": True, **info, **{r["row"]: {
        "train_examples_per_second": r["train"]["examples_per_second"],
        "latents_per_second": {name: r[name]["latents_per_second"] for name in ("one_call_per_chunk", "blocked")},
        "blocked_over_train": r["blocked"]["over_train"], "blocked_speedup": r["blocked_speedup"],
        "max_abs_difference": r["max_abs_difference"]} for r in records}}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--k", type=int, default=100, help="importance samples per example")
    p.add_argument("--examples", type=int, default=100, help="test examples evaluated per round")
    p.add_argument("--train-steps", type=int, default=10, help="training steps per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the figures are medians")
    p.add_argument("--least-seconds", type=float, default=0.5,
                   help="a timing repeats a short call until it lasts this long, and takes the mean")
    add_run_options(p, "eval_speed", RESULTS)
    return parse_run_args(p, list(ROWS))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from vaezoo.core.progress import progress_bars

    results = ResultsFile(args.out, "eval_speed.py", args.threads, args.seed, k=args.k, examples=args.examples,
                          train_steps=args.train_steps, repeats=args.repeats)
    with progress_bars(False):
        for row in args.rows:
            results.emit(speed_row(row, args))
    results.finish(summarise)


if __name__ == "__main__":
    main()
