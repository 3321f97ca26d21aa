"""kill -9 at any moment of a run: after resuming, the run equals the uninterrupted one.

A clean run of the CLI logs every file-system operation it makes (tests/crash_at.py). Each
test run is then killed with SIGKILL just before one of them (and, at some points, killed
again while resuming), resumed with `vaezoo train --resume`, and compared with the clean
run: every metrics.jsonl record (wall-clock seconds aside), the last and best weights,
eval.json and the prior samples must be identical. Kill points cover every kind of
operation on every kind of file (checkpoint pieces, the switch, removing the old
checkpoint, best weights, the recipe, eval.json, samples, metrics).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny_modality import TINY_GAN_RECIPE, TINY_RECIPE
from vaezoo.train.checkpoints import latest_weights

CRASH_AT = Path(__file__).resolve().parent / "crash_at.py"

# Three epochs of 8 steps cut at step 20, a checkpoint every 4 steps: validations at the epoch
# ends (8, 16) and at the last step (20, mid-epoch); checkpoints taken before and after a
# validation at the same step (8, 16, 20); a shorter last window of train records (log_every 3).
CRASH_SETTINGS = ("log_every = 1", "log_every = 3\ncheckpoint_every = 4\nmax_steps = 20\nthreads = 1")
RECIPE = TINY_RECIPE.replace(*CRASH_SETTINGS)
# The same with the adversarial stage from step 4: a hook with its own network and optimiser
# whose state is in every checkpoint.
GAN_RECIPE = TINY_GAN_RECIPE.replace(*CRASH_SETTINGS)
# A conditional run: its recipe is written twice (as given, then with the classes the data
# names), and every checkpoint holds the class embedding.
CONDITIONAL_RECIPE = RECIPE.replace("TinyVectors", "LabelledTiny") + "\n[condition]\nenabled = true\n"


def vaezoo(run_dir: Path, *args, kill_at: int = 0, ops_log: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, VAEZOO_TEST_KILL_AT=str(kill_at))
    if ops_log is not None:
        env["VAEZOO_TEST_OPS_LOG"] = str(ops_log)
    return subprocess.run([sys.executable, str(CRASH_AT), "train", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)


def start_or_resume(recipe: Path, run: Path, **kill) -> subprocess.CompletedProcess:
    """What a user does after a crash: resume the run, or (no recipe.toml yet) start it again."""
    if (run / "recipe.toml").exists():
        return vaezoo(run, "--resume", run, **kill)
    return vaezoo(run, recipe, "--run-dir", run, **kill)


def fingerprint(run: Path) -> dict:
    """Everything a resumed run must reproduce exactly."""
    records = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)   # a torn line would fail here: the rewind must leave none
        if record["split"] == "timing":
            record = {k: v for k, v in record.items() if k not in ("train_seconds", "examples_per_second")}
        records.append(record)
    weights = {name: load_file(str(path)) for name, path in
               (("last", latest_weights(run)), ("best", run / "best.safetensors"),
                # the optimisers' moments, the RNG states and the hooks' tensors (a discriminator)
                ("state", latest_weights(run).parent / "trainer_state.safetensors"))}
    return {"metrics": records, "weights": {name: {k: v.tolist() for k, v in w.items()} for name, w in weights.items()},
            "eval": json.loads((run / "eval.json").read_text()),
            "samples": {p.name: p.read_text() for p in sorted((run / "samples").glob("prior*.csv"))},
            "checkpoints": len(list((run / "checkpoints").iterdir()))}


def describe_op(line: str) -> str:
    """An operation's kind: its name and its path with steps, counters and random parts masked."""
    _, name, path = line.split(" ", 2)
    inside = re.match(r".*/(run|ref)(/|$)", path)
    if not inside:
        return f"{name} (outside the run)"
    path = re.sub(r"\.[a-z0-9_]{8}\.tmp", ".RANDOM.tmp", path[inside.end():])
    return f"{name} {re.sub(r'[0-9]+', 'N', path)}"


def clean_run(root: Path, recipe_text: str) -> tuple[Path, dict, list[str]]:
    recipe = root / "tiny.toml"
    recipe.write_text(recipe_text)
    ops_log = root / "ops.log"
    done = vaezoo(root / "ref", recipe, "--run-dir", root / "ref", ops_log=ops_log)
    assert done.returncode == 0, done.stderr[-2000:]
    ops = ops_log.read_text().splitlines()
    return recipe, fingerprint(root / "ref"), ops


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return clean_run(tmp_path_factory.mktemp("crash"), RECIPE)


def kill_points(ops: list[str]) -> list[int]:
    """One operation of every kind inside the run (its middle occurrence), plus a seeded few more."""
    by_kind: dict[str, list[int]] = {}
    for index, line in enumerate(ops, start=1):
        if "(outside the run)" not in describe_op(line):
            by_kind.setdefault(describe_op(line), []).append(index)
    points = {indices[len(indices) // 2] for indices in by_kind.values()}
    points |= set(random.Random(0).sample(sorted(i for indices in by_kind.values() for i in indices), 4))
    return sorted(points)


def test_the_clean_run_is_what_the_kill_points_assume(reference):
    _, clean, ops = reference
    validations = [r["step"] for r in clean["metrics"] if r["split"] == "validation"]
    assert validations == [8, 16, 20]            # the epoch ends and the last step, once each
    assert clean["eval"]["step"] == 20 and clean["eval"]["weights"] == "best"
    assert clean["checkpoints"] == 1             # older checkpoints are removed after the switch
    kinds = {describe_op(line) for line in ops}
    for expected in ("fsync checkpoints/.N-step-N.RANDOM.tmp/model.safetensors",
                     "fsync checkpoints/.N-step-N.RANDOM.tmp/trainer_state.json",
                     "replace checkpoints/.N-step-N.RANDOM.tmp", "fsync metrics.jsonl",
                     "replace checkpoints/N-step-N", "replace .best.safetensors.RANDOM.tmp"):
        assert any(kind.startswith(expected) for kind in kinds), (expected, sorted(kinds))


def kill_and_resume(recipe: Path, run: Path, point: int, kill_the_resume_at: int) -> dict:
    """Kill the run before operation ``point`` (and its resume before ``kill_the_resume_at``,
    when not 0), resume it to the end, and return its fingerprint."""
    run.parent.mkdir()
    killed = vaezoo(run, recipe, "--run-dir", run, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if kill_the_resume_at:
        again = start_or_resume(recipe, run, kill_at=kill_the_resume_at)
        assert again.returncode in (0, -signal.SIGKILL), again.stderr[-2000:]
    resumed = start_or_resume(recipe, run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    assert not [p for p in run.rglob("*.tmp")], "temporary files left behind"
    return fingerprint(run)


def test_kill_9_at_every_kind_of_file_operation_then_resume_equals_the_clean_run(reference, tmp_path):
    recipe, clean, ops = reference
    points = kill_points(ops)
    assert len(points) >= 20
    # Every third kill is followed by a second one early in the resume, inside the clean-up of
    # what the first left. Two at a time: each process runs on one thread.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {point: pool.submit(kill_and_resume, recipe, tmp_path / f"kill-{point}" / "run", point,
                                   1 + i % 4 if i % 3 == 0 else 0)
                for i, point in enumerate(points)}
    for point, future in runs.items():
        assert future.result() == clean, f"killed before operation {ops[point - 1]}"
    print(f"{len(points)} kill points, all identical to the clean run:", *(ops[p - 1] for p in points), sep="\n  ")


def test_kill_9_at_random_moments_then_resume_equals_the_clean_run(reference, tmp_path):
    """Kills by the clock land anywhere: in a training step, a validation, a write."""
    recipe, clean, _ = reference
    kill_at_random_moments(recipe, clean, tmp_path, seed=1)


def test_kill_9_with_the_adversarial_stage_then_resume_equals_the_clean_run(tmp_path):
    """The same with a discriminator and its Adam state in the checkpoints (trained from step 5):
    the resumed run's VAE, discriminator, RNG and records equal the clean run's."""
    recipe, clean, _ = clean_run(tmp_path, GAN_RECIPE)
    assert any("disc_loss" in r for r in clean["metrics"])
    assert any(k.startswith("hooks/adversarial/discriminator/") for k in clean["weights"]["state"])
    kill_at_random_moments(recipe, clean, tmp_path, seed=2)


def kill_at_random_moments(recipe: Path, clean: dict, tmp_path: Path, seed: int) -> None:
    run = tmp_path / "run"
    rng = random.Random(seed)
    kills = 0
    for _ in range(6):
        args = ["--resume", run] if (run / "recipe.toml").exists() else [recipe, "--run-dir", run]
        ready = tmp_path / "ready"
        ready.unlink(missing_ok=True)
        env = dict(os.environ, VAEZOO_TEST_KILL_AT="0", VAEZOO_TEST_READY=str(ready))
        process = subprocess.Popen([sys.executable, str(CRASH_AT), "train", *map(str, args), "--no-progress"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # Wait for the imports (a second or two), then let the command work a random while.
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.05, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=120)
        if process.returncode == 0:
            break
    if not (run / "eval.json").exists() or process.returncode != 0:
        finished = start_or_resume(recipe, run)
        assert finished.returncode == 0, finished.stderr[-2000:]
    assert kills >= 1
    assert fingerprint(run) == clean


def test_kill_9_in_a_conditional_run_then_resume_equals_the_clean_run(tmp_path):
    """Killed at each write of recipe.toml (before and after the classes are resolved) and at
    random moments: the resumed conditional run equals the clean one."""
    recipe, clean, ops = clean_run(tmp_path, CONDITIONAL_RECIPE)
    assert sorted(clean["samples"]) == [f"prior-class{i}.csv" for i in range(4)]
    assert "condition.embedding.weight" in clean["weights"]["last"]
    recipe_writes = [i for i, line in enumerate(ops, start=1) if describe_op(line).startswith("replace .recipe.toml")]
    assert len(recipe_writes) >= 2, [describe_op(line) for line in ops][:20]
    points = recipe_writes[:2] + [recipe_writes[1] + 1]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {point: pool.submit(kill_and_resume, recipe, tmp_path / f"kill-{point}" / "run", point, 0)
                for point in points}
    for point, future in runs.items():
        assert future.result() == clean, f"killed before operation {ops[point - 1]}"
    (tmp_path / "random").mkdir()
    kill_at_random_moments(recipe, clean, tmp_path / "random", seed=3)
