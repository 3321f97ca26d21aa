"""Decoded latents written with the modality's writer: one set of files, or one per class.

A conditional VAE decodes the same latents once per class, so the files of two classes
differ only by the class (a row per class in the report, columns that share their z).
Each class's files get the stem ``STEM-classII-NAME`` (II zero-padded, NAME made safe for
file names), which sorts in class order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch

from vaezoo.core.conditions import ClassCondition
from vaezoo.core.model import VAE
from vaezoo.plugin.protocol import Modality


def condition_of(vae: VAE) -> dict:
    """``{"condition": ...}`` for eval.json when ``vae`` is conditional (its figures are then of
    log p(x|c)), else nothing."""
    return {} if vae.condition is None else {"condition": vae.condition.summary()}


def class_stem(stem: Path, condition: ClassCondition, class_id: int) -> Path:
    """``stem`` with the class appended: ``prior`` -> ``prior-class03-Dress``."""
    width = len(str(condition.classes - 1))
    safe = re.sub(r"[^A-Za-z0-9_.]+", "_", condition.names[class_id]).strip("._")[:40]
    tail = f"-{safe}" if safe and safe != str(class_id) else ""
    return stem.with_name(f"{stem.name}-class{class_id:0{width}d}{tail}")


def class_targets(vae: VAE, stem: Path, classes: Sequence[int] | None = None) -> list[tuple[int | None, Path]]:
    """The file sets to decode into, as (class id, stem): ``(None, stem)`` for an unconditional
    VAE; for a conditional one, each class of ``classes`` (default: every class) under ``class_stem``."""
    if vae.condition is None:
        return [(None, stem)]
    ids = range(vae.condition.classes) if classes is None else classes
    return [(class_id, class_stem(stem, vae.condition, class_id)) for class_id in ids]


@torch.no_grad()
def write_decoded(vae: VAE, modality: Modality, z: torch.Tensor, stem: Path,
                  classes: Sequence[int] | None = None) -> list[Path]:
    """Decode ``z`` [M, D] and write it with ``modality.write_samples``: under ``stem`` for an
    unconditional VAE; for a conditional one, once per class of ``classes`` (default: every
    class) under ``class_stem``."""
    p = next(vae.parameters())
    z = z.to(p.device, p.dtype)
    files: list[Path] = []
    for class_id, target in class_targets(vae, stem, classes):
        files += modality.write_samples(vae.decode(z, class_id), target)
    return files
