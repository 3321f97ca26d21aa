"""Filling in missing cells from the posterior, and writing the filled table.

A missing cell gets the decoder's mean (real) or most probable category, at the posterior
mean or averaged over posterior draws z ~ q(z | observed cells) (probabilities are averaged
before the argmax, so a category that is likely under most draws wins). Observed cells are never touched:
the output carries their original text.
"""

from __future__ import annotations

from pathlib import Path

import torch

import vaezoo

from vaezoo_tabular.columns import Schema
from vaezoo_tabular.modality import TabularModality
from vaezoo_tabular.table import Table, read_table, write_table


@torch.no_grad()
def predict(vae: vaezoo.VAE, batch: dict, draws: int, weighting: str = "importance") -> torch.Tensor:
    """[N, C] in model space: every cell's prediction.

    draws = 0 decodes the posterior mean. Otherwise the decoder means (and class
    probabilities) of `draws` posterior samples are averaged, with self-normalised
    importance weights p(x_obs | z) p(z) / q(z | x_obs) ("importance", as in MIWAE,
    Mattei & Frellsen 2019: an estimate of E[x_missing | x_observed]) or equally ("uniform").
    """
    q = vae.encode(batch)
    if draws == 0:
        z, log_q = q.point[None], None
    else:
        z, log_q = q.rsample_with_log_prob((draws,))
    s, n, d = z.shape
    classes = vae.conditions(batch)     # a conditional model: every draw keeps its row's class
    px = vae.decode(z.reshape(s * n, d), None if classes is None else classes.repeat(s))
    if draws and weighting == "importance":
        # the batch repeated sample-major, row i * n + j for draw i of row j, like z.reshape;
        # log p(z) of the run's prior and log q(z|x) of its posterior (whatever kinds they are)
        log_p = px.log_prob(batch["x"].repeat(s, 1), batch["mask"].repeat(s, 1)).reshape(s, n)
        log_w = log_p + vae.prior.log_prob(z) - log_q
        weights = torch.softmax(log_w, dim=0)[..., None]
    elif weighting in ("importance", "uniform"):
        weights = torch.full((s, n, 1), 1.0 / s, device=z.device)
    else:
        raise ValueError(f"weighting must be 'importance' or 'uniform', got {weighting!r}")
    out = (px.mean.reshape(s, n, -1) * weights).sum(0)
    for col, probs in zip(px.cat_cols, px.probs):
        out[:, col] = (probs.reshape(s, n, -1) * weights).sum(0).argmax(-1).to(out.dtype)
    return out


def filled_rows(schema: Schema, batch: dict, predicted: torch.Tensor) -> list[list[str]]:
    """The batch's original rows with every missing cell of a modelled column filled in."""
    text = schema.cells(predicted.cpu())
    rows = []
    for cells, columns, guess in zip(batch["cells"], batch["columns"], text):
        row = ["" if cell is None else cell for cell in cells]
        for column, value in zip(schema.columns, guess):
            at = columns.index(column.name)
            if cells[at] is None:
                row[at] = value
        rows.append(row)
    return rows


def write_filled(schema: Schema, batch: dict | None, predicted: torch.Tensor, stem: Path) -> list[Path]:
    """STEM.csv (or STEM-NAME.csv per input file); without a batch, rows of predictions only."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if batch is None:
        path = stem.with_name(stem.name + ".csv")
        with vaezoo.atomic_path(path) as tmp:
            write_table(tmp, [c.name for c in schema.columns], schema.cells(predicted.cpu()))
        return [path]
    rows = filled_rows(schema, batch, predicted)
    sources = list(dict.fromkeys(batch["source"]))
    written = []
    for k, source in enumerate(sources):
        name = stem.name if len(sources) == 1 else f"{stem.name}-{k + 1}-{Path(source).stem}"
        path = stem.with_name(name + ".csv")
        picked = [n for n, s in enumerate(batch["source"]) if s == source]
        with vaezoo.atomic_path(path) as tmp:
            write_table(tmp, batch["columns"][picked[0]], [rows[n] for n in picked])
        written.append(path)
    return written


def impute(run: vaezoo.Run, path: str | Path, draws: int = 50, seed: int = 0, weighting: str = "importance") -> Table:
    """The table at PATH with its missing cells filled in by the trained run (`vaezoo.open_run`).

    Returns a Table of text cells (observed cells exactly as in the file).
    """
    modality = run.modality
    if not isinstance(modality, TabularModality):
        raise vaezoo.InputError(f"{run.path}: a run of the {modality.name!r} modality; impute needs a tabular one")
    batch = vaezoo.to_device(modality.load_inputs([str(path)]), run.device)
    torch.manual_seed(seed)
    rows = filled_rows(modality.schema(), batch, predict(run.vae, batch, draws, weighting))
    source = read_table(path, modality.recipe.data.missing)
    cells: list[list[str | None]] = [list(row) for row in rows]  # a Table's cells may be None; these are all text
    return Table(source.path, source.columns, cells, source.lines)
