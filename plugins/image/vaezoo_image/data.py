"""Image data: MNIST-format IDX files, folders of PNG/JPEG images, Hugging Face data sets.

Every split is a map-style dataset whose items are ``{"x": float [C, H, W] in [0, 1]}``
plus ``"label"`` (a long scalar) when the data has labels, and ``"factors"`` (long ``[F]``,
ground-truth factor indices) with ``data.factors = true``. Three sources are read:

- IDX (MNIST, Fashion-MNIST, KMNIST): ``train-images-idx3-ubyte[.gz]`` with its labels file
  gives train and validation (a seeded hold-out), ``t10k-*`` gives test.
- An image folder: either ``train/``, optional ``validation/`` (or ``val/``) and optional
  ``test/`` sub-folders, or a single folder from which validation and test are held out.
  With ``labels = true`` the first sub-folder level names the classes (sorted by name).
- A Hugging Face ``datasets`` data set on disk (``format = "hf"``, see ``hf_source``).

IDX and Hugging Face images are decoded once into the run directory and memory-mapped.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import Dataset, default_collate

import vaezoo
from vaezoo import SPLITS, InputError, derive_seed, split_indices

from vaezoo_image.config import DataConfig
from vaezoo_image.shapes import FACTORS_JSON   # factor names beside {train,t10k}-factors-idx2-ubyte

if TYPE_CHECKING:
    from vaezoo_image.hf_source import HFSource

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): byte 3 of the magic number.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# -- IDX files -------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzipped or plain (told apart by content, not by name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise InputError(f"{path}: IDX file not found") from None
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise InputError(f"{path}: corrupt gzip data ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected 0000 followed by "
            f"a type code in {', '.join(f'{c:02x}' for c in _IDX_DTYPES)} and the number of dimensions)"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: IDX header truncated ({len(raw)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise InputError(f"{path}: IDX data has {len(raw)} bytes, its header {shape} needs {expected}")
    # astype copies into native byte order, leaving a writable array torch can share.
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


IDX_CHUNK = 4096   # images decoded, resized and written at a time into the memory-mapped copy


def stream_idx_images(path: Path, size: int, color: str, out: Path) -> tuple[int, ...]:
    """Decode an idx3 image file (gzipped or plain) ``IDX_CHUNK`` images at a time, bring them
    to ``size`` and ``color`` (``resize_tensor``) and append the uint8 ``[C, size, size]``
    images to the file ``out``; returns the shape ``(N, C, size, size)``. The same checks as
    ``read_idx``; memory holds one chunk, not the file."""
    path = Path(path)
    try:
        with open(path, "rb") as probe:
            zipped = probe.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if zipped else open(path, "rb")) as f, open(out, "wb") as sink:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise InputError(
                    f"{path}: not an IDX file (magic number {head.hex() or 'missing'}; expected 0000 followed by "
                    f"a type code in {', '.join(f'{c:02x}' for c in _IDX_DTYPES)} and the number of dimensions)")
            ndim = head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise InputError(f"{path}: IDX header truncated ({4 + len(dims)} bytes, {ndim} dimensions need "
                                 f"{4 + 4 * ndim})")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
            if head[2] != 0x08 or ndim != 3:
                raise InputError(f"{path}: expected unsigned-byte images of shape N x H x W, got "
                                 f"{np.dtype(_IDX_DTYPES[head[2]])} {shape}")
            count, height, width = shape
            for start in range(0, count, IDX_CHUNK):
                rows = min(IDX_CHUNK, count - start)
                raw = f.read(rows * height * width)
                if len(raw) < rows * height * width:
                    raise InputError(f"{path}: IDX data ends after {start * height * width + len(raw) + 4 + 4 * ndim} "
                                     f"bytes; its header {shape} needs {count * height * width + 4 + 4 * ndim}")
                chunk = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(rows, 1, height, width)
                sink.write(resize_tensor(chunk, size, color).numpy().tobytes())
            if f.read(1):
                raise InputError(f"{path}: IDX data is longer than its header {shape} says")
    except FileNotFoundError:
        raise InputError(f"{path}: IDX file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputError(f"{path}: corrupt gzip data ({err})") from None
    return (count, 1 if color == "gray" else 3, size, size)


def find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    """``{prefix}-{kind}-ubyte`` with or without ``.gz`` (kind: images-idx3 or labels-idx1)."""
    for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_images(path: Path) -> torch.Tensor:
    """uint8 images ``[N, 1, H, W]`` from an idx3 file."""
    array = read_idx(path)
    if array.ndim != 3 or array.dtype != np.uint8:
        raise InputError(f"{path}: expected unsigned-byte images of shape N x H x W, got {array.dtype} {array.shape}")
    return torch.from_numpy(array).unsqueeze(1)


def read_idx_labels(path: Path, count: int) -> torch.Tensor:
    array = read_idx(path)
    if array.ndim != 1 or len(array) != count:
        raise InputError(f"{path}: expected {count} labels (one per image), got shape {array.shape}")
    return torch.from_numpy(array.astype(np.int64))


def read_idx_factors(path: Path, count: int) -> torch.Tensor:
    """Factor indices ``[N, F]`` (long) from an idx2 file with one row per image."""
    array = read_idx(path)
    if array.ndim != 2 or len(array) != count or array.dtype.kind not in "iu":
        raise InputError(f"{path}: expected integer factors of shape {count} x F (one row per image), "
                         f"got {array.dtype} {array.shape}")
    return torch.from_numpy(array.astype(np.int64))


def resize_tensor(images: torch.Tensor, size: int, color: str) -> torch.Tensor:
    """Bring uint8 ``[N, C, H, W]`` images to ``size`` and the channel count of ``color``."""
    if color == "rgb" and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if tuple(images.shape[-2:]) != (size, size):
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


# -- image files -----------------------------------------------------------------------------


def load_image(path: Path | IO[bytes], size: int, color: str, where: str = "") -> torch.Tensor:
    """One PNG/JPEG (a file, or its bytes in a file object) as uint8 ``[C, size, size]``:
    center-cropped to a square, then resized. Errors name ``where`` (default: the path)."""
    where = where or str(path)
    try:
        with Image.open(path) as opened:
            image: Image.Image = ImageOps.exif_transpose(opened)  # phones store rotation as a tag
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):
                # 16-bit gray: convert("L") would clip at 255 rather than rescale 0..65535.
                scaled = np.asarray(image, dtype=np.float64) / 257.0
                image = Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8))
            image = image.convert("L" if color == "gray" else "RGB")
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"{where}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # UnidentifiedImageError and truncated data are OSErrors; broken headers raise the others.
        raise InputError(f"{where}: cannot read image ({err})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def list_images(folder: Path) -> list[Path]:
    """PNG/JPEG files under ``folder`` (recursively, hidden files skipped), in a stable order."""
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def folder_labels(root: Path, files: Sequence[Path], classes: list[str]) -> torch.Tensor:
    """Class index of each file from its first sub-folder under ``root``."""
    index = {name: i for i, name in enumerate(classes)}
    ids = []
    for f in files:
        parts = f.relative_to(root).parts
        if len(parts) < 2:
            raise InputError(
                f"{f}: with data.labels = true every image must sit in a class sub-folder of {root}; "
                "move it, or set data.labels = false"
            )
        if parts[0] not in index:
            raise InputError(f"{f}: class folder {parts[0]!r} is not among the training classes {classes}")
        ids.append(index[parts[0]])
    return torch.tensor(ids, dtype=torch.long)


# -- datasets --------------------------------------------------------------------------------


class ImageDataset(Dataset):
    """Shared item logic: uint8 -> [0, 1] floats, optional binarization, optional label.

    Subclasses provide ``raw(i)`` (uint8 ``[C, H, W]``) for the selected ``indices``.
    ``binarize = "dynamic"`` with ``fixed_seed = None`` draws fresh pixels from the global
    RNG on every access (the trainer seeds and checkpoints it, so runs resume exactly);
    with a ``fixed_seed`` every example gets one reproducible draw, as evaluation needs.
    """

    def __init__(self, indices: Sequence[int], labels: torch.Tensor | None, binarize: str, fixed_seed: int | None,
                 factors: torch.Tensor | None = None):
        self.indices = list(indices)
        self.labels = labels
        self.factors = factors
        self.binarize = binarize
        self.fixed_seed = fixed_seed

    def raw(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        i = self.indices[position]
        x = self.raw(i).float() / 255.0
        if self.binarize == "dynamic":
            generator = None if self.fixed_seed is None else torch.Generator().manual_seed(derive_seed(self.fixed_seed, "binarize", i))
            x = torch.bernoulli(x, generator=generator)
        item = {"x": x}
        if self.labels is not None:
            item["label"] = self.labels[i]
        if self.factors is not None:
            item["factors"] = self.factors[i]
        return item


class TensorImageDataset(ImageDataset):
    """Images as one uint8 tensor ``[N, C, H, W]``, in memory or memory-mapped (IDX and
    Hugging Face data)."""

    def __init__(self, images: torch.Tensor, labels, indices, binarize, fixed_seed, factors=None):
        super().__init__(indices, labels, binarize, fixed_seed, factors)
        self.images = images
        self.index_tensor = torch.as_tensor(self.indices, dtype=torch.long)

    def raw(self, i: int) -> torch.Tensor:
        return self.images[i]

    def __getitems__(self, positions: list[int]) -> dict:
        """A whole batch by one vectorised index (vaezoo passes it through its collate):
        item-by-item loading costs more than an MLP's training step."""
        if self.binarize == "dynamic" and self.fixed_seed is not None:
            # One seeded draw per example cannot be vectorised; evaluation is not the hot path.
            return default_collate([self[p] for p in positions])
        idx = self.index_tensor[torch.as_tensor(positions, dtype=torch.long)]
        x = self.images[idx].float().div_(255.0)   # in place: one batch-sized allocation less per step
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        batch = {"x": x}
        if self.labels is not None:
            batch["label"] = self.labels[idx]
        if self.factors is not None:
            batch["factors"] = self.factors[idx]
        return batch


class FolderImageDataset(ImageDataset):
    """Image files decoded on access, so folders larger than memory work."""

    def __init__(self, files: list[Path], labels, indices, binarize, fixed_seed, *, size: int, color: str):
        super().__init__(indices, labels, binarize, fixed_seed)
        self.files, self.size, self.color = files, size, color

    def raw(self, i: int) -> torch.Tensor:
        return load_image(self.files[i], self.size, self.color)


# -- sources: which examples form which split --------------------------------------------------


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def eval_seed(cfg: DataConfig, split: str) -> int | None:
    """Seed of the one fixed binarization of an evaluation split; None (fresh draws) for train."""
    return None if split == "train" else cfg.split_seed * len(SPLITS) + SPLITS.index(split)


def held_out(n: int, cfg: DataConfig, *, validation: bool, test: bool) -> dict[str, list[int]]:
    """The examples of each split, of ``n`` in one source, when the ``validation`` and/or
    ``test`` splits are held out of it (seeded by ``data.split_seed``); a split that is not
    held out is absent."""
    rest, indices = list(range(n)), {}
    if test:
        rest, indices["test"] = split_indices(n, cfg.test_fraction, cfg.split_seed)
    if validation:
        # After a test hold-out, validation comes from what is left, with a seed of its own.
        keep, held = split_indices(len(rest), cfg.validation_fraction, cfg.split_seed + 1 if test else cfg.split_seed)
        rest, indices["validation"] = [rest[i] for i in keep], [rest[i] for i in held]
    indices["train"] = rest
    return indices


def train_subset(indices: list[int], limit: int, seed: int) -> list[int]:
    """A seeded random subset of ``indices`` (sorted), or all of them when ``limit`` is 0."""
    if not limit or limit >= len(indices):
        return indices
    perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(indices[p] for p in perm[:limit])


def memmap_tensor(path: Path, dtype: type, shape: Sequence[int]) -> torch.Tensor:
    """The raw file ``path`` as a tensor, memory-mapped (pages are read as batches need them)."""
    if not shape[0]:
        return torch.from_numpy(np.zeros(tuple(shape), dtype=dtype))
    # Copy-on-write: torch may take it as writable, and nothing is ever written back.
    return torch.from_numpy(np.memmap(path, dtype=dtype, mode="c", shape=tuple(shape)))


def cached_images(folder: Path, fingerprint: dict, build: Callable[[Path], dict]) -> tuple[Path, dict, torch.Tensor]:
    """(folder, manifest, images) of images decoded once into ``folder`` (``vaezoo.cached_folder``):
    ``build(staging)`` writes uint8 ``[N, C, H, W]`` images to ``staging / "images.u8"`` and
    returns the manifest with their "shape"; the images come back memory-mapped."""
    folder, manifest = vaezoo.cached_folder(folder, {"image_data_format": 1, **fingerprint}, build)
    return folder, manifest, memmap_tensor(folder / "images.u8", np.uint8, manifest["shape"])


class IdxSource:
    """MNIST-format files: train and validation from the train file, test from t10k."""

    def __init__(self, cfg: DataConfig, cache: Path | None = None):
        self.cfg, self.cache = cfg, cache
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._factors: dict[str, torch.Tensor | None] = {}

    def _images(self, path: Path, prefix: str) -> torch.Tensor:
        """The images of an idx3 file at the recipe's size and color, uint8 ``[N, C, H, W]``:
        with a cache folder (the run directory's ``image-data/``), decoded once into a raw
        file there and memory-mapped (pages are read as batches need them); without one, in
        memory."""
        if self.cache is None:
            return resize_tensor(read_idx_images(path), self.cfg.size, self.cfg.color)
        cfg = self.cfg
        fingerprint = {"size": cfg.size, "color": cfg.color, "files": vaezoo.file_fingerprint([path])}

        def build(staging: Path) -> dict:
            return {"shape": list(stream_idx_images(path, cfg.size, cfg.color, staging / "images.u8"))}

        return cached_images(self.cache / prefix, fingerprint, build)[2]

    def _load(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if prefix not in self._cache:
            folder = self.cfg.path
            images_path = find_idx(folder, prefix, "images-idx3")
            if images_path is None:
                raise InputError(f"{folder}: {prefix}-images-idx3-ubyte[.gz] not found (needed for the "
                                 f"{'test' if prefix == 't10k' else 'train and validation'} splits)")
            images = self._images(images_path, prefix)
            labels = None
            labels_path = find_idx(folder, prefix, "labels-idx1") if self.cfg.labels else None
            if labels_path is not None:
                labels = read_idx_labels(labels_path, len(images))
            self._cache[prefix] = (images, labels)
        return self._cache[prefix]

    def _load_factors(self, prefix: str, count: int) -> torch.Tensor | None:
        """``{prefix}-factors-idx2-ubyte[.gz]`` with ``data.factors = true``, else None."""
        if not self.cfg.factors:
            return None
        if prefix not in self._factors:
            path = find_idx(self.cfg.path, prefix, "factors-idx2")
            if path is None:
                raise InputError(f"{self.cfg.path}: data.factors = true but {prefix}-factors-idx2-ubyte[.gz] is not there "
                                 "(python -m vaezoo_image.shapes writes it); set data.factors = false")
            self._factors[prefix] = read_idx_factors(path, count)
        return self._factors[prefix]

    @property
    def factor_names(self) -> list[str] | None:
        """The factors' names from ``factors.json`` beside the files, when it is there."""
        path = self.cfg.path / FACTORS_JSON
        if not self.cfg.factors or not path.is_file():
            return None
        try:
            names = json.loads(path.read_text(encoding="utf-8")).get("names")
        except (OSError, ValueError, AttributeError) as err:
            raise InputError(f"{path}: cannot read the factor names ({err})") from None
        return [str(n) for n in names] if isinstance(names, list) else None

    def split(self, split: str) -> Dataset:
        check_split(split)
        cfg = self.cfg
        if split == "test":
            images, labels = self._load("t10k")
            return TensorImageDataset(images, labels, range(len(images)), cfg.binarize, eval_seed(cfg, split),
                                      self._load_factors("t10k", len(images)))
        images, labels = self._load("train")
        factors = self._load_factors("train", len(images))
        train, validation = split_indices(len(images), cfg.validation_fraction, cfg.split_seed)
        if split == "validation":
            return TensorImageDataset(images, labels, validation, cfg.binarize, eval_seed(cfg, split), factors)
        train = train_subset(train, cfg.max_train_examples, cfg.split_seed)
        return TensorImageDataset(images, labels, train, cfg.binarize, None, factors)


class FolderSource:
    """A folder of images, with or without train/, validation/ (val/) and test/ sub-folders."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self._files: dict[Path, list[Path]] = {}
        train_root = self._split_root("train") or cfg.path
        # The training folder's sub-folders name the classes, so every split maps names alike.
        names = sorted(p.name for p in train_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.classes = names if cfg.labels and names else None

    def _split_root(self, split: str) -> Path | None:
        names = {"train": ["train"], "validation": ["validation", "val"], "test": ["test"]}[split]
        for name in names:
            if (self.cfg.path / name).is_dir():
                return self.cfg.path / name
        return None

    def _files_of(self, root: Path) -> list[Path]:
        if root not in self._files:
            files = list_images(root)
            if not files:
                raise InputError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files)")
            self._files[root] = files
        return self._files[root]

    def _dataset(self, split: str, root: Path, indices: list[int]) -> Dataset:
        c = self.cfg
        files = self._files_of(root)
        labels = folder_labels(root, files, self.classes) if self.classes else None
        if split == "train":
            indices = train_subset(indices, c.max_train_examples, c.split_seed)
        return FolderImageDataset(files, labels, indices, c.binarize, eval_seed(c, split), size=c.size, color=c.color)

    def split(self, split: str) -> Dataset:
        check_split(split)
        cfg = self.cfg
        train_root = self._split_root("train")
        if train_root is None:
            # One folder: test is held out first, then validation from what is left.
            indices = held_out(len(self._files_of(cfg.path)), cfg, validation=True, test=True)
            return self._dataset(split, cfg.path, indices[split])
        root = self._split_root(split)
        if split == "test" and root is None:
            raise InputError(f"{cfg.path}: no test split (a test/ sub-folder next to train/ is missing)")
        if split == "test" or self._split_root("validation") is not None:
            assert root is not None  # train/ exists, and so does this split's folder (test was checked above)
            return self._dataset(split, root, list(range(len(self._files_of(root)))))
        # No validation/ folder: validation is held out of train/.
        indices = held_out(len(self._files_of(train_root)), cfg, validation=True, test=False)
        return self._dataset(split, train_root, indices[split])


def is_hf(path: Path) -> bool:
    """Whether ``path`` looks like a Hugging Face data set on disk: a save_to_disk folder (its
    state.json or dataset_dict.json), a .parquet file or a folder holding some."""
    if path.is_file():
        return path.suffix == ".parquet"
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file() or any(path.glob("*.parquet"))


def open_source(cfg: DataConfig, cache: Path | None = None) -> IdxSource | FolderSource | HFSource:
    """The data source the config describes, checked for the right layout. IDX and Hugging Face
    images are decoded once into ``cache`` (a folder in the run directory) and memory-mapped."""
    has_idx = cfg.path.is_dir() and any(find_idx(cfg.path, prefix, "images-idx3") for prefix in ("train", "t10k"))
    fmt = cfg.format if cfg.format != "auto" else "idx" if has_idx else "hf" if is_hf(cfg.path) else "folder"
    if fmt != "idx" and cfg.factors:
        raise InputError(f"{cfg.path}: data.factors = true needs IDX data with {{train,t10k}}-factors-idx2-ubyte[.gz] "
                         "(python -m vaezoo_image.shapes writes them), not "
                         f"{'a Hugging Face dataset' if fmt == 'hf' else 'an image folder'}; set data.factors = false")
    if fmt == "hf":
        from vaezoo_image.hf_source import HFSource

        return HFSource(cfg, cache)
    if not cfg.path.is_dir():
        raise InputError(f"{cfg.path}: data.path must be a folder (of IDX files or of images) or, with "
                         "data.format = 'hf', a Hugging Face dataset (a saved folder or .parquet files)")
    if fmt == "idx" and not has_idx:
        raise InputError(f"{cfg.path}: data.format = 'idx' but neither train- nor t10k-images-idx3-ubyte[.gz] is there")
    return IdxSource(cfg, cache) if fmt == "idx" else FolderSource(cfg)
