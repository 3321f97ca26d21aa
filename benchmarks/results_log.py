"""What the model-family and VAE-GAN benchmarks write, shared: a progress log on stderr, the
figures of an evaluation rounded alike, and the JSON-lines results file (one line per
trained model, then a summary), rewritten after every model so an interrupted run keeps
what it finished."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable

import torch


def logger(tag: str) -> Callable[[str], None]:
    """``log(message)``: one time-stamped line on stderr, ``[tag HH:MM:SS] message``."""
    def log(message: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
    return log


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
