"""What the model-family and VAE-GAN benchmarks write, shared: a progress log on stderr, the
figures of an evaluation rounded alike, and the JSON-lines results file (one line per
trained model, then a summary), rewritten after every model so an interrupted run keeps
what it finished."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

import torch

ROOT = Path(__file__).resolve().parent.parent


def logger(tag: str) -> Callable[[str], None]:
    """``log(message)``: one time-stamped line on stderr, ``[tag HH:MM:SS] message``."""
    def log(message: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
    return log


def add_run_options(p: argparse.ArgumentParser, name: str, results: Path) -> None:
    """--threads, --seed, --work (run directories, under benchmarks/.runs/NAME) and --out (the
    results file), the options every side-by-side benchmark has."""
    # One thread: on a shared 2-core machine two intra-op threads wait on each other.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs" / name)
    p.add_argument("--out", type=Path, default=results)


def chosen(p: argparse.ArgumentParser, option: str, value: str, allowed: Sequence[str], *, required: bool = False) -> list[str]:
    """A comma-separated option's items, each checked against ``allowed`` (argparse's error otherwise)."""
    items = [x for x in value.split(",") if x]
    bad = [x for x in items if x not in allowed]
    if bad or (required and not items):
        p.error(f"{option}: unknown {', '.join(bad) or '(none)'}; known: {', '.join(allowed)}")
    return items


def parse_run_args(p: argparse.ArgumentParser, rows: Sequence[str]) -> argparse.Namespace:
    """The parsed options with ``--rows`` checked against ``rows`` (one at least) and ``--work`` absolute."""
    args = p.parse_args()
    args.rows = chosen(p, "--rows", args.rows, rows, required=True)
    args.work = args.work.resolve()
    return args


def r4(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def eval_figures(e) -> dict:
    """The figures of an ``EvalResult`` that every row reports."""
    return {"test_examples": e.n_examples, "iw_samples": e.iw_samples, "iw_nll": r4(e.iw_nll), "elbo": r4(e.elbo),
            "reconstruction": r4(e.reconstruction), "kl": r4(e.kl), "active_units": e.active_units,
            "latent_dim": e.latent_dim, "mutual_information": r4(e.mutual_information),
            "mutual_information_bound": r4(e.mutual_information_bound)}


class ResultsFile:
    """The results of one benchmark run: ``emit(record)`` prints a model's line and rewrites
    ``path``; ``finish(summarise)`` adds the summary line, ``summarise(records, info)``."""

    def __init__(self, path: Path, script: str, threads: int, seed: int, **info):
        self.path = Path(path)
        self.records: list[dict] = []
        self.lines: list[str] = []
        self.started = time.perf_counter()
        self.info: dict = {"command": f"benchmarks/{script} " + " ".join(sys.argv[1:]),
                           "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                           "threads": threads, "torch": torch.__version__, "seed": seed, **info}

    def emit(self, record: dict) -> None:
        self.records.append(record)
        self._write(record)

    def finish(self, summarise: Callable[[list[dict], dict], dict]) -> None:
        self.info["total_seconds"] = round(time.perf_counter() - self.started, 1)
        self._write(summarise(self.records, self.info))

    def _write(self, record: dict) -> None:
        from vaezoo.core.files import write_text

        line = json.dumps(record)
        print(line, flush=True)
        self.lines.append(line)
        write_text(self.path, "\n".join(self.lines) + "\n")
