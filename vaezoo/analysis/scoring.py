"""Anomaly scores: how unlikely the model finds each input, and the ROC AUC against labels.

The score is in nats, higher for inputs the model finds less likely:

- k = 0 or 1: -ELBO = -(log p(x|z) - KL(q(z|x) || p(z))) at one posterior sample, closed-form KL;
- k > 1: -log p(x) estimated by importance weighting with k posterior samples (Burda et al.
  2016), a tighter and steadier score that costs k decodings per input.

Every row the inputs hold gets a score and a name. An input that gives one row (an image, a
sentence) is named as given; a plugin's ``load_inputs`` may read several rows from one input
(the tabular plugin reads a whole CSV table per file), and then they are named ``ITEM:INDEX``,
0-based (``table.csv:0``, ``table.csv:1`` ...). Inputs of a split are named ``SPLIT:INDEX``
(``test:0`` ...).

Label files are CSV with the header ``input,label``: one row per scored name, label 1 for
anomalous and 0 for normal (so a table's rows are labelled ``table.csv:0``, ``table.csv:1`` ...).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from vaezoo.core.batches import Batch, batch_size, slice_batch, to_device
from vaezoo.core.files import atomic_path, write_json
from vaezoo.core.errors import InputError, VaezooError
from vaezoo.core.estimators import evaluation_mode, iw_log_likelihood
from vaezoo.core.objectives import elbo_objective
from vaezoo.core.progress import progress


def anomaly_scores(vae, batches: Iterable[Batch], device, *, k: int = 0, chunk_size: int = 100, seed: int = 0,
                   total: int | None = None) -> torch.Tensor:
    """One score per example, ``[N]``, under a forked RNG seeded with ``seed`` (repeatable)."""
    scores = []
    with evaluation_mode(vae, device, seed):
        for batch in progress(batches, desc="scoring", total=total):
            batch = to_device(batch, device)
            log_px = iw_log_likelihood(vae, batch, k, chunk_size=chunk_size) if k > 1 else elbo_objective(vae, batch).elbo
            scores.append(-log_px.double().cpu())
    if not scores:
        raise InputError("nothing to score")
    return torch.cat(scores)


def roc_auc(scores: Sequence[float] | torch.Tensor, anomalous: Sequence[int] | torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for telling anomalous (1) from normal (0) inputs.

    Equals the probability that a random anomalous input scores above a random normal one,
    ties counting one half (scikit-learn's ``roc_auc_score``). Raises ``ValueError`` for a
    length mismatch, a NaN score, or labels of one kind only, where the AUC is undefined.
    """
    from sklearn.metrics import roc_auc_score

    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    positive = torch.as_tensor(anomalous).flatten().bool()
    if len(scores) != len(positive):
        raise ValueError(f"{len(scores)} scores but {len(positive)} labels")
    if torch.isnan(scores).any():
        raise ValueError("a score is NaN; the AUC is undefined")
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError(f"the ROC AUC needs anomalous and normal inputs; got {n1} anomalous and {n0} normal")
    # The AUC depends only on the order of the scores. scikit-learn refuses infinities (an input
    # the model finds impossible scores +inf), so it is given the scores' dense ranks, ties kept.
    _, ranks = torch.unique(scores, sorted=True, return_inverse=True)
    return float(roc_auc_score(positive.numpy(), ranks.numpy()))


def read_labels(path: Path) -> dict[str, int]:
    """``{input: 0 or 1}`` from a CSV label file with the header ``input,label``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: label file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read label file ({err})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0]] != ["input", "label"]:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise InputError(f"{path}: line 1: expected the header 'input,label', got {got!r}")
    labels: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or row[1].strip() not in ("0", "1"):
            raise InputError(f"{path}: line {line}: expected INPUT,LABEL with LABEL 0 (normal) or 1 (anomalous), got {','.join(row)!r}")
        name = row[0]
        if name in labels:
            raise InputError(f"{path}: line {line}: input {name!r} is labelled twice")
        labels[name] = int(row[1].strip())
    return labels


ROWS_HINT = " (an input holding several rows is labelled per row: INPUT:0, INPUT:1 ...)"


def labels_for(names: Sequence[str], table: dict[str, int], path: Path, hint: str = "") -> torch.Tensor:
    missing = [n for n in names if n not in table]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{path}: no label for input {missing[0]!r}{more}; every scored input needs a row{hint}")
    return torch.tensor([table[n] for n in names])


def row_names(modality, items: Sequence[str], rows: int) -> list[str]:
    """Names of the ``rows`` rows that ``load_inputs(items)`` gave, when that is not one per item.

    Loads the items one at a time to learn how many rows each gives (the rows of a batch
    follow the items in order): an item with one row keeps its name, the rows of an item
    with several are ``ITEM:0``, ``ITEM:1`` ...
    """
    names: list[str] = []
    for item in items:
        count = batch_size(modality.load_inputs([item]))
        if count == 0:
            raise InputError(f"{item}: holds nothing to score (the {modality.name!r} modality read no rows from it)")
        names += [item] if count == 1 else [f"{item}:{i}" for i in range(count)]
    if len(names) != rows:
        raise VaezooError(f"the {modality.name!r} modality's load_inputs gave {rows} rows for {len(items)} inputs "
                          f"together but {len(names)} one at a time; its rows must follow the inputs in order")
    return names


def input_batches(modality, items: Sequence[str], size: int, names: list[str] | None = None) -> Iterable[Batch]:
    """Batches of at most ``size`` rows read from ``items``, ``size`` items at a time; appends
    the name of every row yielded to ``names`` when given (complete once the batches are exhausted).

    Every item must give at least one row: a chunk with as many rows as items is taken as
    one row per item without loading them one by one."""
    for start in range(0, len(items), size):
        chunk = list(items[start : start + size])
        batch = modality.load_inputs(chunk)
        rows = batch_size(batch)
        # One row per item (images, sentences): the items name the rows, and nothing is read twice.
        if names is not None:
            names += chunk if rows == len(chunk) else row_names(modality, chunk, rows)
        # A table of many rows is scored in batches of the usual size, not all at once.
        for first in range(0, rows, size):
            yield batch if rows <= size else slice_batch(batch, slice(first, first + size))


def write_scores(path: Path, names: Sequence[str], scores: torch.Tensor) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["input", "score"])
        for name, score in zip(names, scores.tolist()):
            out.writerow([name, f"{score:.6f}"])
    return Path(path)


@dataclass
class ScoreResult:
    names: list[str]
    scores: torch.Tensor
    k: int
    roc_auc: float | None = None
    anomalous: int | None = None

    @property
    def kind(self) -> str:
        return f"-log p(x), importance-weighted, k={self.k}" if self.k > 1 else "-ELBO"


def save_scores(result: ScoreResult, path: Path, labels_path: Path | None = None) -> list[Path]:
    """The scores as CSV at ``path``; with labels also ``path`` with .json: the ROC AUC and what it counts."""
    files = [write_scores(path, result.names, result.scores)]
    if result.roc_auc is not None:
        summary = Path(path).with_suffix(".json")
        write_json(summary, {"score": result.kind, "k": result.k, "inputs": len(result.names),
                             "anomalous": result.anomalous, "roc_auc": result.roc_auc,
                             "labels": str(labels_path) if labels_path else None})
        files.append(summary)
    return files


def score_run(run, inputs: Sequence[str], *, split: str = "test", k: int = 0, max_examples: int | None = None,
              seed: int = 0, labels_path: Path | None = None, condition: int | None = None,
              batch_size: int | None = None) -> ScoreResult:
    """Score every row of INPUTS (read by the plugin's ``load_inputs``, a batch at a time) or of a split,
    ``batch_size`` rows at a time (default: the recipe's [eval] batch_size).
    A conditional model scores -log p(x|c) with each row's class, or with class ``condition``
    for every row (inputs read from the command line have none of their own)."""
    from vaezoo.core.data import batches_in, split_batches

    size = batch_size or run.recipe.eval.batch_size
    # Labels are read before the slow part, so a bad label file fails fast.
    table = read_labels(labels_path) if labels_path is not None else {}
    if inputs:
        items = list(inputs)
        if labels_path is not None:
            # Each input needs a label as ITEM, or as ITEM:0 when it holds several rows; the
            # full match waits for the row names, known only once the inputs are read.
            labels_for([item for item in items if f"{item}:0" not in table], table, labels_path, ROWS_HINT)
        names: list[str] = []  # filled by input_batches while anomaly_scores reads them
        batches = input_batches(run.modality, items, size, names)
        total = None  # how many batches depends on the rows each input holds
    else:
        batches = split_batches(run.modality, split, size, max_examples)
        total = batches_in(run.modality, split, size, max_examples)
    if condition is not None:
        batches = (run.vae.condition.labelled(batch, condition) for batch in batches)
    scores = anomaly_scores(run.vae, batches, run.device, k=k, chunk_size=run.recipe.eval.chunk_size, seed=seed,
                            total=total)
    if not inputs:
        names = [f"{split}:{i}" for i in range(len(scores))]
    result = ScoreResult(names, scores, k)
    if labels_path is not None:
        anomalous = labels_for(names, table, labels_path, ROWS_HINT if inputs else "")
        try:
            result.roc_auc = roc_auc(scores, anomalous)
        except ValueError as err:
            raise InputError(f"{labels_path}: {err}") from None
        result.anomalous = int(anomalous.sum())
    return result
