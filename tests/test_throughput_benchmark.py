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
    assert {(r["dtype"], r["compile"], r["host_copy"]) for r in rows} == {
        ("fp32", False, "resident"), ("fp32", True, "resident"), ("bf16", False, "resident"), ("bf16", True, "resident"),
        ("fp32", False, "pageable")}   # the per-step host copy's path (pinned memory needs CUDA)
    assert all(r["row"] == "tabular" and r["batch"] == 16 and r["device"] == "cpu" and r["samples_per_second"] > 0
               for r in rows)
    speedups = summary["speedup_over_fp32_eager"]["tabular batch 16"]
    assert summary["summary"] and speedups["fp32"] == 1.0 and speedups["fp32+pageable"] > 0
    assert "pinned_over_pageable" not in summary


def test_the_summary_sets_pinned_copies_against_pageable_ones():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import summarise

    def record(host_copy, speed, dtype="fp32", compiled=False):
        return {"row": "image", "batch": 64, "dtype": dtype, "compile": compiled, "host_copy": host_copy,
                "samples_per_second": speed}

    summary = summarise([record("resident", 1000.0), record("resident", 1500.0, "bf16"),
                         record("pageable", 800.0), record("pinned", 900.0)], {})
    assert summary["speedup_over_fp32_eager"]["image batch 64"] == {"fp32": 1.0, "bf16": 1.5, "fp32+pageable": 0.8,
                                                                    "fp32+pinned": 0.9}
    assert summary["pinned_over_pageable"] == {"image batch 64": 1.125}
