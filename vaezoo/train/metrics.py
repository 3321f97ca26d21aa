"""metrics.jsonl and TensorBoard: where every number of a run is written."""

from __future__ import annotations

import json
from pathlib import Path

from vaezoo.core.files import fsync_path
from vaezoo.train.checkpoints import METRICS


class MetricsLog:
    """One JSON record per line in metrics.jsonl, plus TensorBoard scalars; silent on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resumed_at: int | None = None):
        self.path = run_dir / METRICS
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the events a crashed run logged after its checkpoint, as the rewind does in metrics.jsonl.
            purge = None if resumed_at is None else resumed_at + 1
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["step"])
            self.tb.flush()

    def size(self) -> int:
        """metrics.jsonl's length now (0 on ranks that write nothing)."""
        return self.path.stat().st_size if self.enabled and self.path.exists() else 0

    def durable_size(self) -> int:
        """Flush metrics.jsonl to disk and return its length, which the next checkpoint records."""
        if not self.enabled or not self.path.exists():
            return 0
        fsync_path(self.path)
        return self.path.stat().st_size

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
