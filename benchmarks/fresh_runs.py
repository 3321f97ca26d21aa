"""A model trained from scratch for a benchmark, timed from its own metrics.jsonl: the sum of
its epochs' training seconds (validation left out), which is what "equal budget" compares."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vaezoo.train.trainer import TrainResult


@dataclass
class Trained:
    result: TrainResult
    steps_per_epoch: int
    epochs: list[dict]          # per epoch: epoch, first (step before it), last (step after it), seconds
    train_seconds: float        # sum of the epochs' seconds: the budget's measure
    fit_seconds: float          # the whole fit: set-up, validation, checkpoints, end-of-training samples
    adversarial_start: int | None
    last_train_record: dict


def fresh_run(label: str, recipe, run_dir: Path, log: Callable[[str], None]) -> Trained:
    """Train ``recipe`` from scratch in ``run_dir`` (whatever was there is removed)."""
    from vaezoo.train.trainer import Trainer

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log(f"{label}: training")
    started = time.perf_counter()
    trainer = Trainer(recipe, run_dir, progress_bar=False, echo=lambda msg: log(f"{label}: {msg}"))
    result = trainer.fit()
    fit_seconds = time.perf_counter() - started
    timing: dict[int, dict] = {}
    start = None
    last: dict = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "timing":
            timing[record["epoch"]] = record   # the last record of an epoch counts
        elif record.get("event") == "adversarial_start":
            start = record["step"]
        elif record.get("split") == "train":
            last = record
    epochs, first = [], 0
    for epoch in sorted(timing):
        epochs.append({"epoch": epoch, "first": first, "last": timing[epoch]["step"],
                       "seconds": timing[epoch]["train_seconds"]})
        first = timing[epoch]["step"]
    spe = -(-trainer.batches_per_epoch // recipe.train.grad_accum)
    return Trained(result, spe, epochs, sum(e["seconds"] for e in epochs), fit_seconds, start, last)
