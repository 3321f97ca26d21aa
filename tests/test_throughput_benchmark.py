"""The GPU throughput benchmark runs on the CPU too (its --smoke mode): CI checks the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_throughput_benchmark_smoke_runs_and_prints_json(tmp_path):
    out = tmp_path / "throughput.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--smoke", "--out", str(out),
                           "--work", str(tmp_path / "runs")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    rows, summary = records[:-1], records[-1]
    assert {(r["dtype"], r["compile"]) for r in rows} == {("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    assert all(r["row"] == "tabular" and r["batch"] == 16 and r["device"] == "cpu" and r["samples_per_second"] > 0
               for r in rows)
    assert summary["summary"] and summary["speedup_over_fp32_eager"]["tabular batch 16"]["fp32"] == 1.0
