"""`vaezoo sample` and `vaezoo reconstruct` in batches: memory that does not grow with the request.

The modality's writer (a PNG grid, lines of text, WAVs, a CSV) takes one decoded batch whole,
so it gets the first ``preview`` examples only, decoded in one piece: exactly the files of
earlier versions when the request is no larger. A larger request also gets every example,
decoded ``batch_size`` at a time, in ``STEM-all.safetensors`` (``TensorStream``: written as
it goes, never held in memory):

- ``x``: the decoded means ``[N, ...]``, when they are real-valued (not text's token ids);
- ``z``: the latents decoded ``[N, D]`` (sample: the draws; reconstruct: each posterior's point);
- ``condition``: the class each row was decoded with ``[N]`` (conditional runs).

A modality whose writer puts one line per sample in one ``.txt`` file (text) also gets every
sample's line in ``STEM-all.txt``: the preview's lines, then the writer's lines for each
later batch, appended as they come.

Latents are drawn ``DRAW_BLOCK`` rows at a time, whatever the batch size, so one seed gives
the same z for every ``--batch-size`` (and a request of at most ``DRAW_BLOCK`` samples draws
them in one call, as before). What a writer draws from the global RNG (text's ``sample``
strategy, tabular's sampled cells) beyond the preview depends on the batches it is given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch

from vaezoo.core.batches import Batch
from vaezoo.core.errors import VaezooError
from vaezoo.core.files import TEMP_SUFFIX, atomic_path
from vaezoo.core.progress import progress
from vaezoo.core.tensor_stream import TensorStream
from vaezoo.train.samples import class_targets

if TYPE_CHECKING:
    from vaezoo.core.model import VAE
    from vaezoo.plugin.protocol import Modality

DRAW_BLOCK = 1024        # latents drawn per call of the sampler, whatever the batch size
ALL = "-all"             # STEM-all.safetensors (and STEM-all.txt) hold every example


class LatentStream:
    """The ``count`` latents of a request, drawn ``DRAW_BLOCK`` rows at a time by ``draw(rows)``
    and handed out in pieces of any size: the draws never depend on how they are taken."""

    def __init__(self, draw: Callable[[int], torch.Tensor], count: int):
        self.draw, self.left = draw, count
        self.pending: list[torch.Tensor] = []

    def take(self, rows: int) -> torch.Tensor:
        have = sum(len(t) for t in self.pending)
        while have < rows:
            if self.left <= 0:
                raise ValueError(f"{rows} latents asked for, {have} left of the request")
            block = self.draw(min(DRAW_BLOCK, self.left))
            self.left -= len(block)
            self.pending.append(block)
            have += len(block)
        out = torch.cat(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending = [out[rows:]] if rows < len(out) else []
        return out[:rows]


def spans(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` in pieces of ``size`` rows (the last may be shorter)."""
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


class AllExamples:
    """What ``STEM-all.safetensors`` (and ``STEM-all.txt``) receive, batch by batch.

    ``x`` is kept when the first batch's decoded mean is a floating-point tensor. Lines are
    kept when ``preview_files`` hold exactly one ``.txt`` file with one line per preview row:
    those lines start ``STEM-all.txt``, and ``add_lines`` appends the writer's lines for each
    later batch. ``close`` writes the files atomically; ``abort`` (or leaving a ``with`` block
    without ``close``) leaves every file as it was.
    """

    def __init__(self, stem: Path, metadata: dict[str, str], preview_files: Sequence[Path] = (), preview_rows: int = 0):
        self.stem = stem
        self.tensors = TensorStream(stem.with_name(stem.name + ALL + ".safetensors"), metadata)
        self.keep_x: bool | None = None       # decided by the first batch
        self.folder = Path(tempfile.mkdtemp(prefix=f".{stem.name}{ALL}.", suffix=TEMP_SUFFIX, dir=stem.parent))
        texts = [f for f in preview_files if f.suffix == ".txt"]
        self.lines: Path | None = None
        if len(texts) == 1 and len(_lines(texts[0])) == preview_rows:
            self.lines = self.folder / "lines.txt"
            shutil.copyfile(texts[0], self.lines)

    def add(self, px: Any, z: torch.Tensor, condition: torch.Tensor | None) -> None:
        """The decoded means (when real-valued), the latents and the classes of one batch."""
        rows: dict[str, torch.Tensor] = {"z": z}
        if self.keep_x is not False:
            mean = px.mean
            if self.keep_x is None:
                self.keep_x = isinstance(mean, torch.Tensor) and mean.is_floating_point() and len(mean) == len(z)
            if self.keep_x:
                rows["x"] = mean
        if condition is not None:
            rows["condition"] = condition.long()
        self.tensors.append(rows)

    def add_lines(self, write: Callable[[Path], list[Path]], rows: int) -> None:
        """Append the lines that ``write(stem)`` (the writer, on one batch of ``rows``) makes."""
        if self.lines is None:
            return
        files = write(self.folder / "batch")
        texts = [f for f in files if f.suffix == ".txt"]
        lines = _lines(texts[0]) if len(texts) == 1 else []
        if len(lines) != rows:
            raise VaezooError(f"the modality's writer wrote {len(lines)} lines in {len(texts)} text files for "
                              f"{rows} samples, after one line per sample for the preview")
        with self.lines.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        for f in files:
            f.unlink(missing_ok=True)

    def close(self) -> list[Path]:
        try:
            files = [self.tensors.close()]
            if self.lines is not None:
                path = self.stem.with_name(self.stem.name + ALL + ".txt")
                with atomic_path(path) as tmp:
                    self.lines.replace(tmp)
                files.append(path)
            return files
        finally:
            self.abort()

    def abort(self) -> None:
        self.tensors.abort()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> AllExamples:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def _with_names(metadata: dict[str, str] | None, vae: VAE) -> dict[str, str]:
    """``metadata``, with the class names (as JSON) for a conditional VAE."""
    if vae.condition is None:
        return dict(metadata or {})
    return {**(metadata or {}), "condition_names": json.dumps(vae.condition.names)}


@torch.no_grad()
def sample_in_batches(vae: VAE, modality: Modality, draw: Callable[[int], torch.Tensor], count: int, stem: Path, *,
                      classes: Sequence[int] | None = None, batch_size: int = 100,
                      preview: int = 64, metadata: dict[str, str] | None = None) -> list[Path]:
    """Decode ``count`` latents from ``draw`` (see ``LatentStream``) and write them: the writer's
    files of the first ``preview`` under ``stem`` (per class for a conditional VAE, as
    ``write_decoded``), and when ``count`` is larger, every sample in ``STEM-all.*``."""
    p = next(vae.parameters())
    latents = LatentStream(draw, count)
    first = latents.take(min(count, preview)).to(p.device, p.dtype)
    targets = class_targets(vae, stem, classes)
    previews = [modality.write_samples(vae.decode(first, class_id), target) for class_id, target in targets]
    if count <= preview:
        return [f for files in previews for f in files]
    with ExitStack() as stack:   # leaving it early (an error, Ctrl-C) writes no -all file and leaves no temporaries
        outputs = [stack.enter_context(AllExamples(target, _with_names(metadata, vae), files, len(first)))
                   for (_, target), files in zip(targets, previews)]
        # The preview's rows again, in batches (their lines are the preview's), then the rest.
        pieces = spans(0, len(first), batch_size) + spans(len(first), count, batch_size)
        for a, b in progress(pieces, desc="sampling", total=len(pieces)):
            z = first[a:b] if b <= len(first) else latents.take(b - a).to(p.device, p.dtype)
            for (class_id, _), out in zip(targets, outputs):
                px = vae.decode(z, class_id)
                out.add(px, z, None if class_id is None else torch.full((len(z),), class_id))
                if a >= len(first):
                    out.add_lines(partial(modality.write_samples, px), len(z))
        return [f for files in previews for f in files] + [f for out in outputs for f in out.close()]


@torch.no_grad()
def reconstruct_in_batches(vae: VAE, modality: Modality, first: Batch, rest: Iterable[Batch] | None, stem: Path, *,
                           prepare: Callable[[Batch], Batch], condition: int | None = None, total: int | None = None,
                           metadata: dict[str, str] | None = None) -> list[Path]:
    """Reconstruct ``first`` (the preview batch) with the writer's files under ``stem``; when
    ``rest`` is given (every row, the preview's included, in batches), also every row in
    ``STEM-all.safetensors``. ``prepare`` moves a batch to the device and gives it its class;
    ``condition``: the class every row is decoded as (default: each row's own)."""
    batch = prepare(first)
    _, px = vae.reconstruct(batch, condition=condition)
    files = modality.write_reconstructions(batch, px, stem)
    if rest is None:
        return files
    with AllExamples(stem, _with_names(metadata, vae)) as out:
        for batch in progress(rest, desc="reconstructing", total=total):
            batch = prepare(batch)
            z, px = vae.reconstruct(batch, condition=condition)
            classes = None
            if vae.condition is not None:
                classes = vae.conditions(batch) if condition is None else torch.full((len(z),), condition)
            out.add(px, z, classes)
        return files + out.close()
