"""How long the `vaezoo` command line takes to answer commands that do no work.

Runs each command N times in a fresh process (the installed `vaezoo` script beside this
Python, or `python -m vaezoo.cli`) and prints one JSON object: per command the median and
minimum wall-clock seconds, the peak resident memory of the process (ru_maxrss from
``os.wait4``, which reports that one child), its exit code, and whether it imported torch
(read from one extra run under ``python -X importtime``).

    python benchmarks/cli_startup.py                 # 10 runs of each command
    python benchmarks/cli_startup.py --runs 30 --command "plugins --json"

Never part of the test suite: timings depend on the machine and its load. The tests check the
behaviour instead (tests/test_cli_startup.py: these commands leave torch unimported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ["--help", "recipes", "options", "options image", "plugins"]


def vaezoo_command() -> list[str]:
    script = Path(sys.executable).parent / "vaezoo"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vaezoo.cli"]


def run_once(argv: list[str]) -> tuple[float, int, float]:
    """(seconds, exit code, peak RSS in MiB) of one run of ``argv``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return seconds, proc.returncode, usage.ru_maxrss / 1024  # Linux reports KiB


def imports_torch(args: list[str]) -> bool:
    """Whether the command imports torch, from ``-X importtime`` (stderr, one line per module)."""
    code = "import sys; from vaezoo.cli import main; sys.argv = ['vaezoo', *sys.argv[1:]]; main()"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], capture_output=True, text=True)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in proc.stderr.splitlines())


def measure(command: str, runs: int) -> dict:
    args = shlex.split(command)
    argv = vaezoo_command() + args
    run_once(argv)  # warm the file-system cache once; not counted
    results = [run_once(argv) for _ in range(runs)]
    seconds = [r[0] for r in results]
    return {
        "command": f"vaezoo {command}",
        "runs": runs,
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "peak_rss_mib": round(max(r[2] for r in results), 1),
        "exit_code": results[-1][1],
        "imports_torch": imports_torch(args),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--command", action="append", help="a command line after `vaezoo` (repeatable); "
                        f"default: {', '.join(repr(c) for c in COMMANDS)}")
    opts = parser.parse_args()
    report = {
        "benchmark": "cli_startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "vaezoo": " ".join(vaezoo_command()),
        "results": [measure(command, opts.runs) for command in opts.command or COMMANDS],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
