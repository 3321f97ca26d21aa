"""Latent traversals: what each latent dimension does, for any modality with a writer.

A traversal is a grid of latents: row r takes a base point z (zeros, or the posterior point
of one example) and sweeps dimension ``dims[r]`` over ``steps`` evenly spaced values from
-span to +span (or base ± span with ``relative``), the other dimensions held at the base.
The grid is decoded at once and handed to the modality's ``write_interpolations(px, steps,
stem)`` with one row per dimension, so images come out as a PNG grid, text as lines, audio
as a WAV per row; a modality without its own interpolation writer gets its samples writer
(the decodings in row order: all of the first dimension's steps, then the next).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vaezoo.core.errors import InputError

if TYPE_CHECKING:
    from vaezoo.train.runs import Run

ZEROS = "zeros"
_EXAMPLE = re.compile(r"^(train|validation|test):(\d+)$")


@torch.no_grad()
def latent_traversal(vae, z: torch.Tensor | None = None, *, steps: int = 9, span: float = 3.0,
                     dims: list[int] | None = None, relative: bool = False, condition: int | None = None):
    """Decode ``z`` with one latent dimension at a time swept over ``steps`` values.

    ``z`` is the ``[D]`` base point (default: zeros, the standard prior's mean); ``dims`` the
    dimensions to sweep (default: all). The swept dimension takes the values -span ... span,
    or ``z[d]`` - span ... ``z[d]`` + span with ``relative``; ``condition`` is the class a
    conditional VAE decodes with. Returns ``(latents, p(x|latents))``
    with ``len(dims) * steps`` latents, row-major: the ``steps`` values of the first dimension first.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    param = next(vae.parameters())
    base = torch.zeros(vae.latent_dim, device=param.device, dtype=param.dtype) if z is None else z.to(param).reshape(-1)
    if base.numel() != vae.latent_dim:
        raise ValueError(f"the base point has {base.numel()} values; the latent has {vae.latent_dim} dimensions")
    dims = list(range(vae.latent_dim)) if dims is None else [int(d) for d in dims]
    bad = [d for d in dims if not 0 <= d < vae.latent_dim]
    if bad:
        raise ValueError(f"latent dimensions {bad} are out of range; the latent has {vae.latent_dim}")
    offsets = torch.linspace(-span, span, steps, device=base.device, dtype=base.dtype)
    latents = base.repeat(len(dims) * steps, 1)
    for row, d in enumerate(dims):
        latents[row * steps : (row + 1) * steps, d] = offsets + (base[d] if relative else 0)
    return latents, vae.decode(latents, condition)


def parse_dims(text: str | None, latent_dim: int) -> list[int]:
    """``"0,1,5"`` or ranges ``"0-3,7"`` to dimension numbers; None or ``"all"``: every dimension."""
    if text is None or text.strip() in ("", "all"):
        return list(range(latent_dim))
    dims: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise InputError(f"--dims {text}: {part!r} is not a dimension number or a range like 2-5")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise InputError(f"--dims {text}: the range {part} runs backwards")
        dims += range(first, last + 1)
    bad = sorted({d for d in dims if d >= latent_dim})
    if bad:
        which = f"dimensions {', '.join(map(str, bad))} are" if len(bad) > 1 else f"dimension {bad[0]} is"
        raise InputError(f"--dims {text}: {which} out of range; the latent has {latent_dim} (0 ... {latent_dim - 1})")
    return dims


def base_point(run: Run, source: str, condition: int | None = None) -> tuple[torch.Tensor | None, str, int | None]:
    """The base of a traversal, a tag for file names and the class a conditional run decodes
    with: ``zeros`` (None), ``SPLIT:INDEX`` (the posterior point of that example, of its own
    class unless ``condition`` is given) or an input the modality reads (a file, a sentence),
    of class ``condition``."""
    from vaezoo.core.batches import to_device
    from vaezoo.core.data import dataset_length, examples_at

    c = run.vae.condition
    if source == ZEROS:
        return None, ZEROS, (condition or 0) if c is not None else None
    match = _EXAMPLE.match(source)
    if match:
        split, index = match[1], int(match[2])
        dataset = run.modality.dataset(split)
        size = dataset_length(dataset)
        if index >= size:
            raise InputError(f"--from {source}: the {split} split has {size} examples (0 ... {size - 1})")
        batch, tag = examples_at(dataset, run.modality.collate, [index]), f"{split}-{index}"
    else:
        batch, tag = run.modality.load_inputs([source]), "input"
        count = len(batch["x"])
        if count != 1:
            raise InputError(f"--from {source}: it holds {count} examples; a traversal starts from one")
    if c is not None and condition is not None:
        batch = c.labelled(batch, condition)
    batch = to_device(batch, run.device)
    with torch.no_grad():
        q = run.vae.encode(batch)
        own = run.vae.conditions(batch) if c is not None else None
    return getattr(q, "point", q.mean)[0], tag, None if own is None else int(own[0])


def writer_of(modality):
    """``write_interpolations`` when the modality has its own, else its own ``write_samples``,
    else the protocol's default (tensors)."""
    from vaezoo.plugin.protocol import Modality

    cls = type(modality)
    if getattr(cls, "write_interpolations", None) is Modality.write_interpolations \
            and getattr(cls, "write_samples", None) is not Modality.write_samples:
        return lambda px, steps, stem: modality.write_samples(px, stem)
    return modality.write_interpolations


@dataclass
class Traversal:
    dims: list[int]
    values: list[float]          # the swept values (offsets from the base with relative)
    relative: bool
    source: str
    files: list[Path]
    condition: int | None = None  # the class a conditional run decoded with


def traverse_run(run: Run, *, dims: list[int] | None = None, steps: int = 9, span: float = 3.0,
                 source: str = ZEROS, relative: bool = False, out_dir: Path | None = None,
                 condition: int | None = None) -> Traversal:
    """Sweep ``dims`` of the run's latent around the base ``source`` and write the grid with the
    modality's writer, as ``OUT/traversal-TAG`` (TAG: zeros, SPLIT-INDEX or input; a conditional
    run adds the class it decoded with, ``condition`` or the base's own)."""
    from vaezoo.train.samples import class_stem

    z, tag, class_id = base_point(run, source, condition)
    dims = list(range(run.vae.latent_dim)) if dims is None else dims
    _, px = latent_traversal(run.vae, z, steps=steps, span=span, dims=dims, relative=relative, condition=class_id)
    folder = out_dir if out_dir is not None else run.path / "samples"
    stem = folder / f"traversal-{tag}"
    if run.vae.condition is not None and class_id is not None:
        stem = class_stem(stem, run.vae.condition, class_id)
    files = writer_of(run.modality)(px, steps, stem)
    values = torch.linspace(-span, span, steps).tolist()
    return Traversal(dims, values, relative, source, files, class_id)
