"""Training speed of one process against two under torchrun (DDP, gloo) on this machine's CPUs.

Trains a quick recipe for --steps steps in each layout, from scratch, as `vaezoo train` runs
it (a fresh process; torchrun for two):

- 1x2: one process, 2 torch threads, batch B;
- 1x1: one process, 1 thread, batch B;
- 2x1: two processes of 1 thread each, batch B/2 each: the same global batch as one process
  (the same examples per step and, up to the noise, the same training).

Samples per second is each run's own figure (the "timing" record of its metrics.jsonl):
examples of every rank over the training time, start-up and validation left out. The
layouts take turns, --repeats rounds of each (a busy machine slows all alike), and the
summary gives the medians and the speed of 2x1 against the one-process layouts.

    make bench-distributed
    .venv/bin/python benchmarks/distributed_speed.py --steps 40 --repeats 3

Prints one JSON line per run and a summary, and writes them to
benchmarks/results/distributed_speed.jsonl (--out). Runs go to benchmarks/.runs/distributed_speed/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_log import ResultsFile, add_run_options, logger, r4  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "distributed_speed.jsonl"
#: layout -> (processes, threads per process)
LAYOUTS = {"1x2": (1, 2), "1x1": (1, 1), "2x1": (2, 1)}

log = logger("distributed_speed")


def command(processes: int) -> list[str]:
    """`vaezoo train` in one process, or under torchrun in ``processes`` on this machine."""
    if processes == 1:
        return [sys.executable, "-m", "vaezoo.cli", "train"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "vaezoo.cli", "train"]


def train(layout: str, round_: int, args: argparse.Namespace) -> dict:
    processes, threads = LAYOUTS[layout]
    run = args.work / f"{layout}-{round_}"
    shutil.rmtree(run, ignore_errors=True)
    overrides = [f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size // processes}",
                 f"train.threads={threads}", "train.val_max_examples=100", "train.samples=0", "train.tensorboard=false",
                 "train.log_every=10", "eval.at_end=false", f"seed={args.seed}"]
    started = time.perf_counter()
    proc = subprocess.run([*command(processes), args.recipe, "--run-dir", str(run), "--no-progress",
                           *[arg for o in overrides for arg in ("--set", o)]], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{layout}: vaezoo train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    timing = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "timing"]
    seconds = sum(r["train_seconds"] for r in timing)
    examples = args.steps * args.batch_size   # every rank's: B/processes each
    record = {"layout": layout, "round": round_, "processes": processes, "threads_per_process": threads,
              "batch_per_process": args.batch_size // processes, "steps": args.steps,
              "train_seconds": r4(seconds), "samples_per_second": round(examples / seconds, 1),
              "wall_seconds_with_start_up": round(wall, 1)}
    log(f"{layout} round {round_}: {record['samples_per_second']} samples/s ({seconds:.1f}s training, {wall:.1f}s in all)")
    return record


def summarise(records: list[dict], info: dict) -> dict:
    medians = {layout: statistics.median(r["samples_per_second"] for r in records if r["layout"] == layout)
               for layout in LAYOUTS if any(r["layout"] == layout for r in records)}
    summary: dict = {"summary": True, **info, "median_samples_per_second": medians}
    if "2x1" in medians:
        summary["two_processes_speedup"] = {f"over_{layout}": r4(medians["2x1"] / value)
                                            for layout, value in medians.items() if layout != "2x1"}
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="fashion-mnist-quick", help="a recipe name or .toml file (default: %(default)s)")
    p.add_argument("--steps", type=int, default=40, help="optimiser steps per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="the global batch B (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of every layout (default: %(default)s)")
    add_run_options(p, "distributed_speed", RESULTS)
    args = p.parse_args()
    if args.batch_size % 2 or args.steps < 1 or args.repeats < 1:
        p.error("--batch-size must be even, --steps and --repeats at least 1")
    args.work = args.work.resolve()
    results = ResultsFile(args.out, "distributed_speed.py", 2, args.seed, recipe=args.recipe, steps=args.steps,
                          global_batch=args.batch_size, repeats=args.repeats)
    for round_ in range(args.repeats):
        for layout in LAYOUTS:
            results.emit(train(layout, round_, args))
    results.finish(summarise)


if __name__ == "__main__":
    main()
