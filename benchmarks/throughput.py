"""Training throughput of each quick recipe: samples per second at batch 64 and 512, in fp32 and
bf16, with and without torch.compile. Written for a GPU; runs (slowly) on the CPU too.

For each row a run is trained for one step from its quick recipe (for its fitted state: a
tokenizer, statistics; the speed of a network does not depend on its weights), then its
objective (the recipe's ELBO or bound: encoder, decoder and loss) takes --steps optimiser
steps (Adam, forward, backward, step) on one fixed batch of real training examples after
--warmup steps (which absorb compilation), timed with the device synchronised:

- ``dtype``: fp32, or bf16 autocast (as ``[train] bf16 = true`` runs);
- ``compile``: eager, or ``torch.compile`` of the objective module (the encoder, the decoder
  and the loss in one graph where dynamo can trace them; --compile-backend picks inductor,
  the default, or e.g. eager for a quick check of the path);
- ``channels_last``: for image rows on request (--channels-last), the conv model and batch
  in channels-last memory format;
- ``host_copy`` (CUDA only, fp32 eager): the batch copied from host memory every step, as
  training does, from ordinary ``pageable`` memory or from ``pinned`` memory (what
  ``[train] pin_memory`` gives), both with ``non_blocking=True``; the other rows keep the
  batch ``resident`` on the device. On the CPU these rows are skipped with a notice.

    python benchmarks/throughput.py                       # every row, the device's default
    python benchmarks/throughput.py --device cpu --rows tabular --batches 64 --steps 3
    python benchmarks/throughput.py --smoke               # CI: tiny, CPU, eager compile backend

Prints one JSON line per (row, batch, dtype, compile) and a summary with each variant's
speed-up over fp32 eager; writes them to benchmarks/results/throughput.jsonl (--out).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import ROWS, one_step_run  # noqa: E402  (the quick recipes, one training step each)
from results_log import ResultsFile, add_run_options, chosen, logger, parse_run_args  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "throughput.jsonl"
log = logger("throughput")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(objective, fetch, optimizer, device: torch.device, dtype: str, steps: int) -> float:
    """Seconds per optimiser step (median over ``steps``); ``fetch()`` gives each step's batch."""
    times = []
    for _ in range(steps):
        synchronize(device)
        started = time.perf_counter()
        batch = fetch()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = objective(batch, beta=1.0).loss
        loss.backward()
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(run_dir: Path, row: str, batch_size: int, dtype: str, compiled: bool, args: argparse.Namespace,
            host_copy: str = "resident") -> dict:
    import vaezoo
    from vaezoo.core.batches import channels_last, pin_memory, to_device
    from vaezoo.core.data import first_examples
    from vaezoo.core.objectives import build_objective

    torch.manual_seed(args.seed)
    run = vaezoo.open_run(run_dir, device=str(args.device))
    vae = run.vae.train()
    host = first_examples(run.modality.dataset("train"), run.modality.collate, batch_size)
    layout = channels_last if args.channels_last and row == "image" else (lambda batch: batch)
    if args.channels_last and row == "image":
        vae = vae.to(memory_format=torch.channels_last)
    if host_copy == "resident":
        resident = layout(to_device(host, args.device))

        def fetch():
            return resident
    else:
        if host_copy == "pinned":
            host = pin_memory(host)

        def fetch():
            return layout(to_device(host, args.device))
    objective = build_objective(run.recipe.objective.kind, vae, run.recipe.objective,
                                dataset_size=len(run.modality.dataset("train")))
    step = torch.compile(objective, backend=args.compile_backend) if compiled else objective
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-4)
    started = time.perf_counter()
    timed_steps(step, fetch, optimizer, args.device, dtype, args.warmup)
    warmup_seconds = time.perf_counter() - started
    seconds = timed_steps(step, fetch, optimizer, args.device, dtype, args.steps)
    record = {"row": row, "batch": batch_size, "dtype": dtype, "compile": compiled, "host_copy": host_copy,
              "device": str(args.device),
              "seconds_per_step": round(seconds, 5), "samples_per_second": round(batch_size / seconds, 1),
              "warmup_seconds": round(warmup_seconds, 2)}
    if args.channels_last and row == "image":
        record["channels_last"] = True
    log(f"{row} batch {batch_size} {dtype} {'compiled' if compiled else 'eager'}"
        f"{'' if host_copy == 'resident' else f', {host_copy} host copy'}: {batch_size / seconds:.0f} samples/s")
    return record


def summarise(records: list[dict], info: dict) -> dict:
    """Each variant's speed over fp32 eager with the batch resident, and pinned over pageable copies."""
    speed = {(r["row"], r["batch"], r["dtype"], r["compile"], r.get("host_copy", "resident")): r["samples_per_second"]
             for r in records}
    speedups: dict = {}
    for (row, batch, dtype, compiled, host_copy), value in speed.items():
        base = speed.get((row, batch, "fp32", False, "resident"))
        if base:
            label = f"{dtype}{'+compile' if compiled else ''}{'' if host_copy == 'resident' else '+' + host_copy}"
            speedups.setdefault(f"{row} batch {batch}", {})[label] = round(value / base, 3)
    pinned = {f"{row} batch {batch}": round(value / speed[(row, batch, dtype, compiled, "pageable")], 3)
              for (row, batch, dtype, compiled, host_copy), value in speed.items()
              if host_copy == "pinned" and (row, batch, dtype, compiled, "pageable") in speed}
    return {"summary": True, **info, "speedup_over_fp32_eager": speedups,
            **({"pinned_over_pageable": pinned} if pinned else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--batches", default="64,512", help="comma-separated batch sizes")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, of: fp32, bf16")
    p.add_argument("--compile", default="off,on", help="comma-separated, of: off, on")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: check the path fast)")
    p.add_argument("--channels-last", action="store_true", help="image rows: channels-last model and batch")
    p.add_argument("--host-copy", default="pageable,pinned",
                   help="CUDA only: fp32 eager rows that copy the batch from host memory every step, "
                        "comma-separated, of: pageable, pinned (empty: none)")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu or cuda[:N]")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant (the median counts)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--smoke", action="store_true",
                   help="a quick check of the script: tabular, CPU, batch 16, 2 steps, the eager compile backend")
    add_run_options(p, "throughput", RESULTS)
    args = parse_run_args(p, list(ROWS))
    if args.smoke:
        args.rows, args.batches, args.device, args.steps, args.warmup = ["tabular"], "16", "cpu", 2, 1
        args.compile_backend = "eager"
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.dtypes = chosen(p, "--dtypes", args.dtypes, ["fp32", "bf16"], required=True)
    args.compile = [c == "on" for c in chosen(p, "--compile", args.compile, ["off", "on"], required=True)]
    args.host_copy = chosen(p, "--host-copy", args.host_copy, ["pageable", "pinned"])
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                               "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.host_copy = ["pageable"]   # the per-step copy's code path; a copy to the CPU costs nothing
    elif args.host_copy and args.device.type != "cuda":
        log(f"host-copy rows skipped: pinned memory only matters on CUDA, and this runs on {args.device.type}")
        args.host_copy = []
    from vaezoo.core.progress import progress_bars

    results = ResultsFile(args.out, "throughput.py", args.threads, args.seed, device=str(args.device),
                          device_name=torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else None,
                          steps=args.steps, warmup=args.warmup, compile_backend=args.compile_backend)
    with progress_bars(False):
        for row in args.rows:
            run_dir = one_step_run(row, args)
            for batch_size in args.batches:
                for dtype in args.dtypes:
                    for compiled in args.compile:
                        results.emit(measure(run_dir, row, batch_size, dtype, compiled, args))
                for host_copy in args.host_copy:
                    results.emit(measure(run_dir, row, batch_size, "fp32", False, args, host_copy))
    results.finish(summarise)


if __name__ == "__main__":
    main()
