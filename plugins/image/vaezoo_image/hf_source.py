"""Images of a Hugging Face ``datasets`` data set already on disk (``data.format = "hf"``),
through the core's reader (``vaezoo.hf_splits``, ``vaezoo.hf_batches``: a saved Dataset or
DatasetDict folder, or Parquet files, a record batch at a time with pyarrow).

Each split is decoded once, as the folder source decodes a file (``load_image``: center crop,
resize, color), into the run directory's ``image-data/hf-{split}/`` and memory-mapped like IDX
images, so memory does not grow with the data set. ``data.image_column`` holds the images (an
``Image`` feature, ``{"bytes", "path"}``, or encoded bytes); with ``data.labels = true``,
``data.label_column`` their integer classes (a ``ClassLabel`` column also names them). A
DatasetDict's validation and test splits are used; missing ones are held out of train.
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

import vaezoo
from vaezoo import InputError, hf_batches, hf_columns, hf_splits

from vaezoo_image.config import LABEL_COLUMN, DataConfig
from vaezoo_image.data import (IDX_CHUNK, TensorImageDataset, cached_images, check_split, eval_seed, held_out,
                               load_image, memmap_tensor, train_subset)

HF_ROWS = 1000   # rows of a Parquet file read at a time (an Arrow shard has its own batches, 1,000 rows each)


def decode(value: Any, where: str, cfg: DataConfig) -> torch.Tensor:
    """One cell of the image column as uint8 ``[C, size, size]``: an ``Image`` feature's
    ``{"bytes", "path"}`` (the path is read when there are no bytes) or the encoded bytes."""
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
    if isinstance(data, (bytes, bytearray)):
        return load_image(io.BytesIO(data), cfg.size, cfg.color, where)
    if isinstance(path, str) and path:
        return load_image(Path(path), cfg.size, cfg.color, f"{where} (file {path})")
    if data is None:
        raise InputError(f"{where}: no image in this row")
    raise InputError(f"{where}: holds {type(value).__name__}, not an image; set data.image_column to the column of "
                     "images (an Image feature, or encoded PNG/JPEG bytes)")


def class_index(label: Any, where: str) -> int:
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise InputError(f"{where}: label {label!r} is not a class index (an integer >= 0); set data.label_column to "
                         "a column of integer classes (a ClassLabel), or data.labels = false")
    return label


def decode_split(files: list[Path], cfg: DataConfig, labelled: bool, staging: Path, split: str) -> dict:
    """Write the images of ``files`` (and with ``labelled`` their classes) into ``staging``:
    ``images.u8`` (uint8 ``[N, C, size, size]``), ``labels.i64``; ``IDX_CHUNK`` images are
    held at a time. Returns the manifest: "shape" and the ClassLabel names as "classes"."""
    image, label = cfg.image_column, cfg.label_column
    columns = [image, label] if labelled else [image]
    batches = hf_batches(files, columns, hint="set data.image_column" + (" / data.label_column" if labelled else ""),
                         rows=HF_ROWS)
    rows = ((batch, row, value, batch.columns[label][row - batch.first_row] if labelled else 0)
            for batch in batches for row, value in enumerate(batch.columns[image], batch.first_row))
    count, classes = 0, None
    images: list[torch.Tensor] = []
    labels: list[int] = []
    with ExitStack() as files_open:
        image_sink = files_open.enter_context(open(staging / "images.u8", "wb"))
        label_sink = files_open.enter_context(open(staging / "labels.i64", "wb")) if labelled else None

        def flush() -> None:
            if images:
                image_sink.write(torch.stack(images).numpy().tobytes())
            if label_sink is not None:
                label_sink.write(np.array(labels, dtype=np.int64).tobytes())
            images.clear()
            labels.clear()

        for batch, row, value, class_id in vaezoo.progress(rows, desc=f"decoding {split} images", unit="image"):
            images.append(decode(value, f"{batch.file}, row {row}, column {image!r}", cfg))
            if labelled:
                labels.append(class_index(class_id, f"{batch.file}, row {row}, column {label!r}"))
                classes = classes or batch.class_names(label)
            count += 1
            if len(images) == IDX_CHUNK:
                flush()
        flush()
    if not count:
        raise InputError(f"{cfg.path}: its {split} split has no rows, so no images")
    return {"shape": [count, 1 if cfg.color == "gray" else 3, cfg.size, cfg.size], "classes": classes}


class HFSource:
    """A Hugging Face data set: its train split, and its validation and test splits when it has
    them (a DatasetDict), else held out of train by the recipe's fractions."""

    def __init__(self, cfg: DataConfig, cache: Path | None = None):
        self.cfg, self._cache_root = cfg, cache
        self.files = hf_splits(cfg.path)
        self._loaded: dict[str, tuple[torch.Tensor, torch.Tensor | None, list[str] | None]] = {}

    def _cache(self) -> Path:
        """The run's ``image-data`` folder; without a run, a temporary one (never memory)."""
        if self._cache_root is None:
            self._cache_root = Path(tempfile.mkdtemp(prefix="vaezoo-image-data-"))
            atexit.register(shutil.rmtree, self._cache_root, True)
        return self._cache_root

    def _labelled(self, files: list[Path]) -> bool:
        """Whether the split's images get labels: data.labels and a label column. Without the
        default column the data set is unlabelled (as a folder without classes); a column the
        recipe names must be there."""
        cfg = self.cfg
        if not cfg.labels or not files:   # no files: an empty split (decode_split says so)
            return False
        columns = hf_columns(files[0])
        if cfg.label_column not in columns and cfg.label_column != LABEL_COLUMN:
            raise InputError(f"{files[0]}: no column {cfg.label_column!r} (the columns: {', '.join(columns)}); "
                             "set data.label_column, or data.labels = false")
        return cfg.label_column in columns

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
        """(images, labels, class names) of one split of the data set, decoded once and memory-mapped."""
        if split not in self._loaded:
            cfg, files = self.cfg, self.files[split]
            labelled = self._labelled(files)
            infos = sorted({f.parent / "dataset_info.json" for f in files if (f.parent / "dataset_info.json").is_file()})
            fingerprint = {"source": "hf", "size": cfg.size, "color": cfg.color, "image_column": cfg.image_column,
                           "label_column": cfg.label_column if labelled else None,
                           "files": vaezoo.file_fingerprint([*files, *infos])}
            folder, manifest, images = cached_images(self._cache() / f"hf-{split}", fingerprint,
                                                     lambda staging: decode_split(files, cfg, labelled, staging, split))
            labels = memmap_tensor(folder / "labels.i64", np.int64, [len(images)]) if labelled else None
            self._loaded[split] = (images, labels, manifest.get("classes"))
        return self._loaded[split]

    @property
    def classes(self) -> list[str] | None:
        """The names of a ClassLabel label column (None without labels or for plain integers)."""
        return self._load("train")[2]

    def split(self, split: str) -> Dataset:
        check_split(split)
        cfg = self.cfg
        if split != "train" and split in self.files:
            images, labels, _ = self._load(split)
            return TensorImageDataset(images, labels, range(len(images)), cfg.binarize, eval_seed(cfg, split))
        images, labels, _ = self._load("train")
        indices = held_out(len(images), cfg, validation="validation" not in self.files, test="test" not in self.files)
        chosen = train_subset(indices[split], cfg.max_train_examples, cfg.split_seed) if split == "train" else indices[split]
        return TensorImageDataset(images, labels, chosen, cfg.binarize, eval_seed(cfg, split))
