"""A safetensors file written a batch of rows at a time, never held in memory whole.

safetensors puts a JSON header (every tensor's dtype, shape and byte range) before the data,
so a file cannot be appended to. ``TensorStream`` spills each tensor's rows to a file of its
own in a temporary folder beside the target; ``close`` then writes the header and copies the
spilled bytes after it, atomically (``atomic_path``). Memory holds one batch; the disk holds
the data twice until ``close`` returns. The layout (tensor order, header padding) is the one
``safetensors.torch.save_file`` writes, so the same tensors give the same bytes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

import torch

from vaezoo.core.files import TEMP_SUFFIX, atomic_path

# safetensors' dtype names; the file orders tensors as listed (widest first), then by name.
DTYPES = {torch.int64: "I64", torch.float64: "F64", torch.float32: "F32", torch.int32: "I32",
          torch.bfloat16: "BF16", torch.float16: "F16", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}
ORDER = list(DTYPES.values())


class _Spill:
    """One tensor's rows so far: its dtype, the shape of a row, and the file holding them."""

    def __init__(self, path: Path, dtype: torch.dtype, row_shape: tuple[int, ...]):
        self.path, self.dtype, self.row_shape, self.rows = path, dtype, row_shape, 0
        self.file: BinaryIO = path.open("wb")


class TensorStream:
    """Rows appended to named tensors batch by batch, written as one safetensors file at ``path``.

    Every ``append`` gives some tensors ``[rows, ...]``; each name keeps its dtype and row shape
    (a mismatch is a ``ValueError``). ``drop(name)`` forgets a tensor. ``close()`` writes the
    file and returns its path; leaving a ``with`` block without ``close()`` (an error, Ctrl-C)
    deletes the spilled rows and leaves ``path`` as it was.
    """

    def __init__(self, path: Path, metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Named like atomic_path's temporaries, so remove_temporaries clears one a kill left behind.
        self._folder = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX, dir=self.path.parent))
        self._spills: dict[str, _Spill] = {}

    def append(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            if tensor.dtype not in DTYPES:
                raise ValueError(f"{name}: dtype {tensor.dtype} cannot be stored in safetensors here")
            if tensor.dim() == 0:
                raise ValueError(f"{name}: a scalar has no rows to append")
            spill = self._spills.get(name)
            if spill is None:
                spill = self._spills[name] = _Spill(self._folder / f"{len(self._spills)}.bin", tensor.dtype,
                                                    tuple(tensor.shape[1:]))
            elif (tensor.dtype, tuple(tensor.shape[1:])) != (spill.dtype, spill.row_shape):
                raise ValueError(f"{name}: rows of {tensor.dtype} {list(tensor.shape[1:])} do not follow rows of "
                                 f"{spill.dtype} {list(spill.row_shape)}")
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            spill.file.write(flat.view(torch.uint8).numpy().tobytes())   # raw little-endian bytes, any dtype
            spill.rows += len(tensor)

    def drop(self, name: str) -> None:
        spill = self._spills.pop(name, None)
        if spill is not None:
            spill.file.close()
            spill.path.unlink()

    def rows(self, name: str) -> int:
        """How many rows ``name`` has so far (0 for a name never appended)."""
        return self._spills[name].rows if name in self._spills else 0

    def row_shape(self, name: str) -> tuple[int, ...]:
        return self._spills[name].row_shape

    def close(self) -> Path:
        """Write the file (header, then every tensor's bytes) atomically; returns its path."""
        names = sorted(self._spills, key=lambda n: (ORDER.index(DTYPES[self._spills[n].dtype]), n))
        header: dict[str, object] = {"__metadata__": dict(sorted(self.metadata.items()))} if self.metadata else {}
        offset = 0
        for name in names:
            spill = self._spills[name]
            spill.file.close()
            size = spill.path.stat().st_size
            header[name] = {"dtype": DTYPES[spill.dtype], "shape": [spill.rows, *spill.row_shape],
                            "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)   # the data starts 8-byte aligned, as save_file pads it
        try:
            with atomic_path(self.path) as tmp, tmp.open("wb") as out:
                out.write(len(text).to_bytes(8, "little"))
                out.write(text)
                for name in names:
                    with self._spills[name].path.open("rb") as spilled:
                        shutil.copyfileobj(spilled, out, 1 << 20)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Delete the spilled rows; ``path`` is left as it was."""
        for spill in self._spills.values():
            spill.file.close()
        self._spills.clear()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> TensorStream:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()   # after close() there is nothing left to delete
