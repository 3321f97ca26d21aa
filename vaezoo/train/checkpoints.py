"""Run directories and checkpoints, written crash-safely and read without unpickling.

A run directory holds:

    recipe.toml                 the resolved recipe (every default filled in)
    checkpoints/NNNNNN-step-S/  the latest complete checkpoint (NNNNNN counts checkpoints, S is the step):
        model.safetensors           weights; metadata: versions, run format, modality, step
        trainer_state.safetensors   optimiser tensors and RNG states; metadata: step
        trainer_state.json          step, epoch, position in the epoch, early-stopping state,
                                    optimiser hyper-parameters, Python/NumPy RNG state, and the
                                    length of metrics.jsonl when the checkpoint was taken
    best.safetensors            weights at the best validation loss
    metrics.jsonl               one JSON record per logged step / validation / evaluation
    tensorboard/                TensorBoard event files
    samples/                    what the modality's writers produced
    eval.json                   the last `vaezoo eval` (or end-of-training evaluation)

Single files are written through ``vaezoo.core.files.atomic_path``.

A checkpoint is several files that must agree, so it is written as a whole: a complete new
folder (every file carrying the step, each fsynced) appears under ``checkpoints/`` with one
rename, and only then is the previous one removed. Resuming verifies that every piece names
the same step and falls back to an older complete checkpoint, never to a mixture.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from vaezoo.core.errors import RunDirError
from vaezoo.core.files import TEMP_SUFFIX, atomic_path, file_mode, folder_mode, fsync_path, write_text
from vaezoo.train import formats

RECIPE = "recipe.toml"
CHECKPOINTS = "checkpoints"
MODEL = "model.safetensors"
BEST = "best.safetensors"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        # force_contiguous: a channels-last model's conv weights are stored in the standard layout
        save_model(model, str(tmp), metadata={k: str(v) for k, v in metadata.items()}, force_contiguous=True)


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _first_shape_mismatch(model: torch.nn.Module, path: Path) -> str | None:
    """The first tensor whose shape in the file differs from the model's, described, or None."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            found = tuple(f.get_slice(name).get_shape())
            if name in expected and expected[name] != found:
                return (f"tensor {name!r} has shape {list(found)} in the file, but the model built from "
                        f"recipe.toml needs {list(expected[name])}")
    return None


def load_weights(model: torch.nn.Module, path: Path) -> dict[str, str]:
    """Load weights into ``model`` (strict); returns the file's metadata."""
    if not path.exists():
        raise RunDirError(f"{path}: weights file not found")
    try:
        metadata = read_metadata(path)
        found = formats.run_format(path, metadata)   # a newer format is refused before anything is read
        if found < formats.RUN_FORMAT:
            state = formats.migrate(load_file(str(path)), found)
            missing, unexpected = model.load_state_dict(state, strict=False)
        else:
            mismatch = _first_shape_mismatch(model, path)
            if mismatch:
                raise RunDirError(f"{path}: weights do not fit the model: {mismatch}")
            missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise RunDirError(f"{path}: cannot load weights: {str(err).splitlines()[0]}") from None
    if missing or unexpected:
        raise RunDirError(
            f"{path}: weights do not fit the model built from recipe.toml "
            f"(missing: {', '.join(sorted(missing)[:5]) or 'none'}; unexpected: {', '.join(sorted(unexpected)[:5]) or 'none'})"
        )
    return metadata


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
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)  # legacy=True: the tuple form, never the dict (older numpy stubs allow both)
    version, keys, pos, has_gauss, cached = numpy_state
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys).astype(np.int64))
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


# -- checkpoints ----------------------------------------------------------------------------

# checkpoints/NNNNNN-step-S: NNNNNN counts up with every checkpoint written (two checkpoints may
# share a step: one taken before a validation, one after), S is the step, for people reading.
_CHECKPOINT_NAME = re.compile(r"^(\d+)-step-(\d+)$")
_LEGACY = -1  # vaezoo 0.1 kept one checkpoint's files at the top of the run directory


@dataclass
class Checkpoint:
    """A complete, verified checkpoint read into memory; nothing is applied to a model yet."""

    path: Path                      # the folder (the run directory itself for a 0.1 run)
    step: int
    progress: dict                  # the trainer's own position (step, epoch, early stopping ...)
    optimizer_kind: str | None      # "adam", "sgd" ... (None in 0.1 runs)
    optimizer: dict                 # param_groups and scalars, see _flatten_optimizer
    rng: dict                       # Python and NumPy RNG state
    tensors: dict[str, torch.Tensor]  # optimiser and RNG tensors
    metrics_bytes: int | None       # length of metrics.jsonl when it was taken (None in 0.1 runs)
    hooks: dict[str, Any] | None = None  # each training hook's state by its name, tensors restored (None before hooks)

    @property
    def weights(self) -> Path:
        return self.path / MODEL


class _Incomplete(Exception):
    """A checkpoint folder that cannot be used, and why."""


def _checkpoint_folders(run_dir: Path) -> list[tuple[int, Path]]:
    """(sequence number, folder) of every finished checkpoint folder, newest first."""
    found = []
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for folder in root.iterdir():
            match = _CHECKPOINT_NAME.match(folder.name)
            if match and folder.is_dir():
                found.append((int(match.group(1)), folder))
    if any((Path(run_dir) / name).exists() for name in (MODEL, STATE_TENSORS, STATE_JSON)):
        found.append((_LEGACY, Path(run_dir)))
    return sorted(found, key=lambda item: item[0], reverse=True)


def latest_weights(run_dir: Path) -> Path | None:
    """model.safetensors of the newest checkpoint (folders appear only complete), or None."""
    for _, folder in _checkpoint_folders(run_dir):
        if (folder / MODEL).is_file():
            return folder / MODEL
    return None


def write_checkpoint(run_dir: Path, *, model: torch.nn.Module, metadata: dict[str, Any],
                     optimizer: torch.optim.Optimizer, optimizer_kind: str, progress: dict[str, Any],
                     metrics_bytes: int, hooks: dict[str, Any] | None = None) -> Path:
    """Write weights, optimiser and RNG state, ``progress`` and the training hooks' states
    (JSON values and tensors, e.g. a hook's own network and optimiser) as one new checkpoint folder.

    Every file is written into a temporary folder and fsynced; one rename makes the folder a
    checkpoint; only then are the older checkpoints removed. A crash at any point leaves at
    least one complete checkpoint (once one was written) and never a mixture of two.
    """
    step = int(progress["step"])
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    older = _checkpoint_folders(run_dir)
    final = root / f"{1 + max((seq for seq, _ in older), default=0):06d}-step-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TEMP_SUFFIX, dir=root))
    try:
        save_model(model, str(tmp / MODEL), metadata={**{k: str(v) for k, v in metadata.items()}, "step": str(step)},
                   force_contiguous=True)
        opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
        rng_tensors, rng_info = capture_rng()
        hook_info, hook_tensors = split_tensors(hooks or {}, prefix="hooks")
        save_file({**opt_tensors, **rng_tensors, **hook_tensors}, str(tmp / STATE_TENSORS), metadata={"step": str(step)})
        state = {"progress": progress, "optimizer": {"kind": optimizer_kind, **opt_info}, "rng": rng_info,
                 "metrics_bytes": metrics_bytes, "hooks": hook_info}
        (tmp / STATE_JSON).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        for name in (MODEL, STATE_TENSORS, STATE_JSON):
            os.chmod(tmp / name, file_mode())
            fsync_path(tmp / name)
        os.chmod(tmp, folder_mode())  # mkdtemp makes 0700
        fsync_path(tmp)
        os.replace(tmp, final)           # the switch: the new checkpoint appears whole
        fsync_path(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for sequence, folder in older:
        _remove_checkpoint(sequence, folder)
    return final


def _remove_checkpoint(sequence: int, folder: Path) -> None:
    if sequence == _LEGACY:   # a 0.1 run directory: its top-level files
        for name in (STATE_JSON, STATE_TENSORS, MODEL):
            (folder / name).unlink(missing_ok=True)
        return
    # Renamed out of the candidates first, so a crash halfway through the removal never
    # leaves a half-deleted folder that looks like a checkpoint.
    doomed = folder.with_name(f".{folder.name}.old{TEMP_SUFFIX}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _read_checkpoint_folder(folder: Path) -> Checkpoint:
    missing = [name for name in (MODEL, STATE_TENSORS, STATE_JSON) if not (folder / name).is_file()]
    if missing:
        raise _Incomplete(f"{', '.join(missing)} missing")
    def read(name: str, how: Callable[[Path], Any]) -> Any:
        try:
            return how(folder / name)
        except (OSError, ValueError, SafetensorError) as err:
            raise _Incomplete(f"{name} is unreadable: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None

    info = read(STATE_JSON, lambda path: json.loads(path.read_text(encoding="utf-8")))
    tensors = read(STATE_TENSORS, lambda path: load_file(str(path)))
    tensor_step = read(STATE_TENSORS, read_metadata).get("step")
    model_step = read(MODEL, read_metadata).get("step")
    read(MODEL, lambda path: load_file(str(path)))   # every byte: a damaged file fails here, before anything is applied
    problem = _state_structure_problem(info, tensors)
    if problem:
        raise _Incomplete(f"{STATE_JSON}: {problem}")
    step = info["progress"]["step"]
    steps = {STATE_JSON: str(step), STATE_TENSORS: tensor_step, MODEL: model_step}
    match = _CHECKPOINT_NAME.match(folder.name)
    if match:
        steps["folder name"] = match.group(2)
    if len(set(steps.values())) != 1:
        raise _Incomplete("its pieces disagree on the step (" + ", ".join(f"{k}: {v}" for k, v in steps.items()) + ")")
    optimizer = dict(info["optimizer"])
    try:
        hooks = join_tensors(info["hooks"], tensors) if "hooks" in info else None
    except (KeyError, TypeError, ValueError) as err:
        raise _Incomplete(f"{STATE_JSON}: hook states do not match {STATE_TENSORS} ({err})") from None
    return Checkpoint(folder, step, info["progress"], optimizer.pop("kind", None), optimizer, info["rng"], tensors,
                      info.get("metrics_bytes"), hooks)


# -- nested state with tensors, as JSON plus safetensors ----------------------------------------

_TENSOR, _ITEMS = "__tensor__", "__items__"


def split_tensors(value: Any, prefix: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """A nested state (dicts, lists, numbers, strings, tensors; e.g. a module's or an
    optimiser's ``state_dict()``) as a JSON-ready value plus the tensors it held, named by
    their path under ``prefix``. Dicts whose keys are not all strings (an optimiser's state
    is keyed by parameter index) keep their keys as ``{"__items__": [[key, value], ...]}``."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node):
                return {k: walk(v, f"{path}/{k}") for k, v in node.items()}
            return {_ITEMS: [[k, walk(v, f"{path}/{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"{path}: cannot store a {type(node).__name__} in a checkpoint (tensors, numbers, strings, "
                        "lists and dicts only)")

    return walk(value, prefix), tensors


def join_tensors(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``split_tensors``."""
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            return tensors[value[_TENSOR]]
        if set(value) == {_ITEMS}:
            return {k: join_tensors(v, tensors) for k, v in value[_ITEMS]}
        return {k: join_tensors(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [join_tensors(v, tensors) for v in value]
    return value


def _state_structure_problem(info: Any, tensors: dict) -> str | None:
    """What is wrong with the shape of a trainer_state.json (and its tensors), or None."""
    if not isinstance(info, dict):
        return f"expected a JSON object, got {type(info).__name__}"
    for key, kind in (("progress", dict), ("optimizer", dict), ("rng", dict)):
        if not isinstance(info.get(key), kind):
            return f"'{key}' is missing or not an object"
    step = info["progress"].get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"progress.step must be an integer >= 0, got {step!r}"
    if not isinstance(info["optimizer"].get("param_groups"), list) or not isinstance(info["optimizer"].get("scalars"), dict):
        return "optimizer needs 'param_groups' (a list) and 'scalars' (an object)"
    if not (isinstance(info["rng"].get("numpy"), list) and len(info["rng"]["numpy"]) == 4
            and isinstance(info["rng"].get("python"), list) and len(info["rng"]["python"]) == 3):
        return "rng needs 'numpy' (4 values) and 'python' (3 values)"
    bytes_ = info.get("metrics_bytes")
    if bytes_ is not None and (not isinstance(bytes_, int) or isinstance(bytes_, bool) or bytes_ < 0):
        return f"metrics_bytes must be an integer >= 0, got {bytes_!r}"
    if "rng.torch" not in tensors or "rng.numpy" not in tensors:
        return f"{STATE_TENSORS} lacks the RNG tensors"
    return None


def read_checkpoint(run_dir: Path, echo: Callable[[str], None] = lambda msg: None) -> Checkpoint | None:
    """The newest complete checkpoint of a run; None when none was ever written.

    A newer folder that fails verification (a missing or unreadable piece, pieces naming
    different steps) is skipped with a one-line note; when no folder passes, ``RunDirError``.
    """
    skipped = []
    candidates = _checkpoint_folders(run_dir)
    for _, folder in candidates:
        try:
            checkpoint = _read_checkpoint_folder(folder)
        except _Incomplete as err:
            skipped.append(f"{folder}: {err}")
            continue
        if skipped:
            echo(f"note: skipped {len(skipped)} unusable checkpoint(s) ({'; '.join(skipped)}); "
                 f"resuming from the last complete one, {folder} (step {checkpoint.step})")
        return checkpoint
    if candidates:
        raise RunDirError(f"{run_dir}: no complete checkpoint to resume from ({'; '.join(skipped)})")
    return None


def restore_optimizer(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's optimiser state, then the hyper-parameters the recipe gives now
    (betas, weight decay, momentum ...: load_state_dict would bring back the saved ones)."""
    current = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    saved = _unflatten_optimizer(checkpoint.tensors, checkpoint.optimizer)
    if len(saved["param_groups"]) > 1 and len(optimizer.param_groups) == 1:
        # Checkpoints before 0.2 held two groups, the encoder's parameters then the rest: in
        # the VAE's parameter order, which is the single group's order now.
        first = dict(saved["param_groups"][0])
        first["params"] = [i for g in saved["param_groups"] for i in g["params"]]
        saved["param_groups"] = [first]
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise RunDirError(f"{checkpoint.path / STATE_JSON}: the saved optimiser state does not fit this model "
                          f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    for group, hyper in zip(optimizer.param_groups, current):
        group.update(hyper)
    # Saved tensors come back in the standard layout; a channels-last parameter's moments go
    # back to its layout, where the uninterrupted run kept them (same kernels, same bits).
    for param, state in optimizer.state.items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a half-written last line (a crash) is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def rewind_metrics(path: Path, checkpoint: Checkpoint) -> None:
    """Cut metrics.jsonl back to what it held when ``checkpoint`` was taken: the records after
    it belong to steps (and validations) a resume redoes."""
    if not path.exists():
        return
    if checkpoint.metrics_bytes is not None:
        if path.stat().st_size > checkpoint.metrics_bytes:
            os.truncate(path, checkpoint.metrics_bytes)
        return
    # 0.1 checkpoints did not record the length: keep the records up to their step.
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= checkpoint.step]
    write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
