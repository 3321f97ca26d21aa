"""Run directories and checkpoints, written atomically and read without unpickling.

A run directory holds:

    recipe.toml                 the resolved recipe (every default filled in)
    model.safetensors           latest weights; metadata: versions, modality, step
    best.safetensors            weights at the best validation loss
    trainer_state.safetensors   optimiser tensors and RNG states
    trainer_state.json          step, epoch, position in the epoch, early-stopping state,
                                optimiser hyper-parameters, Python/NumPy RNG state
    metrics.jsonl               one JSON record per logged step / validation / evaluation
    tensorboard/                TensorBoard event files
    samples/                    what the modality's writers produced
    eval.json                   the last `vaezoo eval` (or end-of-training evaluation)

Every file is written to a temporary name in the same folder and renamed into place, so a
crash leaves the previous version intact.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from vaezoo.errors import RunDirError

RECIPE = "recipe.toml"
MODEL = "model.safetensors"
BEST = "best.safetensors"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        save_model(model, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_weights(model: torch.nn.Module, path: Path) -> dict[str, str]:
    """Load weights into ``model`` (strict); returns the file's metadata."""
    if not path.exists():
        raise RunDirError(f"{path}: weights file not found")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise RunDirError(f"{path}: cannot load weights: {str(err).splitlines()[0]}") from None
    if missing or unexpected:
        raise RunDirError(
            f"{path}: weights do not fit the model built from recipe.toml "
            f"(missing: {', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'})"
        )
    return read_metadata(path)


# -- trainer state ------------------------------------------------------------------------


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in info["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": info["param_groups"]}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    info = {"numpy": [version, int(pos), int(has_gauss), float(cached)], "python": [py_version, list(py_state), py_gauss]}
    return tensors, info


def restore_rng(tensors: dict[str, torch.Tensor], info: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((version, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = info["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def save_trainer_state(run_dir: Path, optimizer: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
    """Optimiser and RNG state plus the loop's own ``progress`` (step, epoch, ...)."""
    opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
    rng_tensors, rng_info = capture_rng()
    with atomic_path(run_dir / STATE_TENSORS) as tmp:
        save_file({**opt_tensors, **rng_tensors}, str(tmp), metadata={"step": str(progress["step"])})
    write_json(run_dir / STATE_JSON, {"progress": progress, "optimizer": opt_info, "rng": rng_info})


def load_trainer_state(run_dir: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore optimiser and RNG state; returns the saved ``progress``."""
    json_path, tensor_path = run_dir / STATE_JSON, run_dir / STATE_TENSORS
    if not json_path.exists() or not tensor_path.exists():
        raise RunDirError(f"{run_dir}: no trainer state to resume from ({STATE_JSON} / {STATE_TENSORS} missing)")
    try:
        info = json.loads(json_path.read_text())
        tensors = load_file(str(tensor_path))
        tensor_step = read_metadata(tensor_path).get("step")
    except (OSError, ValueError, SafetensorError) as err:
        raise RunDirError(f"{run_dir}: trainer state is unreadable: {err}") from None
    progress = info["progress"]
    if tensor_step != str(progress["step"]):
        raise RunDirError(f"{run_dir}: {STATE_JSON} (step {progress['step']}) and {STATE_TENSORS} (step {tensor_step}) disagree")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, info["optimizer"]))
    restore_rng(tensors, info["rng"])
    return progress


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a half-written last line (a crash) is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records logged after ``last_step`` (they belong to steps a resume will redo)."""
    if not path.exists():
        return
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= last_step]
    write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
