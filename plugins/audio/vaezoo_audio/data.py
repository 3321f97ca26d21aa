"""Audio data: any folder of WAV/FLAC/OGG files, read lazily, cut into clips of T frames.

Every split is a map-style dataset whose items are

    {"x": float [1, n_mels, T], the normalised log-mel clip,
     "length": long scalar, the clip's real frames (the rest is padding),
     "label": long scalar, the recording's class, only with data.labels = "folder"}

- training: one item per file, a random window of T frames drawn from the global torch RNG
  on every access (the trainer seeds it and stores it in its checkpoints, so a resumed run
  sees the same crops); a file shorter than T is padded.
- validation and test: the file tiled into consecutive windows of T frames, the last one
  padded, so every frame is evaluated once and results do not depend on chance.

With ``data.labels = "folder"`` a recording's class is the name of its folder at
``data.label_depth`` below ``data.path``; the classes are the sorted distinct names over
every recording of the folder (all splits), so the mapping does not depend on the split, and
every clip of a recording carries its label.

Padding is digital silence: the log of ``features.log_floor``, what silent samples give.
Files are decoded on access (soundfile: WAV, FLAC, OGG; channels averaged to mono), so
memory does not grow with the folder; a bounded least-recently-used cache of log-mel
features (``data.cache_mb``) spares decoding the same file every epoch.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from vaezoo import SPLITS, InputError
from vaezoo import split_indices

from vaezoo_audio.config import DataConfig
from vaezoo_audio.features import FrontEnd, Normalizer


def list_audio(folder: Path, extensions: Sequence[str]) -> list[Path]:
    """Audio files under ``folder`` (recursively, hidden files and folders skipped), sorted."""
    suffixes = {e.lower() for e in extensions}
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in suffixes and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_audio(path: Path) -> tuple[torch.Tensor, int]:
    """A mono float32 waveform ``[L]`` (channels averaged) and its sample rate."""
    if not Path(path).is_file():
        raise InputError(f"{path}: audio file not found")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
        # LibsndfileError covers unknown formats and truncated or damaged data.
        raise InputError(f"{path}: cannot read audio ({err})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path}: the file holds no audio samples")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: the audio holds NaN or infinite samples")
    return torch.from_numpy(data.mean(axis=1)), int(rate)


def audio_info(path: Path) -> tuple[int, int]:
    """(samples, sample rate) from the file's header, without decoding it."""
    if not Path(path).is_file():
        raise InputError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise InputError(f"{path}: cannot read audio ({err})") from None
    return int(info.frames), int(info.samplerate)


def folder_classes(root: Path, files: Sequence[Path], depth: int) -> tuple[list[str], list[int]]:
    """The sorted distinct names of the folders at ``depth`` below ``root`` that hold ``files``,
    and each file's index among them; a file with no folder at that depth is an input error."""
    names = []
    for f in files:
        parts = Path(f).relative_to(root).parts
        if len(parts) <= depth:   # the last part is the file itself
            deep = len(parts) - 1
            allowed = (f"data.label_depth from 1 to {deep}" if deep else
                       "a recording in a class sub-folder") + ", or data.labels = 'none'"
            raise InputError(
                f"{f}: data.labels = 'folder' with data.label_depth = {depth} needs a class folder {depth} "
                f"level(s) below {root}, but this recording lies {deep} level(s) deep; allowed: {allowed}"
            )
        names.append(parts[depth - 1])
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    return classes, [index[name] for name in names]


def crop_or_pad(log_mel: torch.Tensor, start: int, frames: int, pad_value: float) -> tuple[torch.Tensor, int]:
    """The window ``[start, start + frames)`` of ``log_mel [M, F]``, padded past its end; and its real frames."""
    clip = log_mel[:, start : start + frames]
    real = clip.shape[-1]
    if real < frames:
        clip = torch.nn.functional.pad(clip, (0, frames - real), value=pad_value)
    return clip, real


def tiles(frames: int, clip_frames: int) -> int:
    """Windows of ``clip_frames`` that cover ``frames`` frames (at least one)."""
    return max(1, -(-frames // clip_frames))


class FeatureStore:
    """Log-mel features of files, computed on demand, with a bounded LRU cache."""

    def __init__(self, front_end: FrontEnd, cfg: DataConfig):
        self.front_end, self.cfg = front_end, cfg
        self.budget = cfg.cache_mb * 2**20
        self.used = 0
        self._cache: OrderedDict[Path, torch.Tensor] = OrderedDict()

    def features(self, path: Path) -> torch.Tensor:
        """Log-mel ``[n_mels, frames]`` of one file (trimmed when the recipe says so), unnormalised."""
        cached = self._cache.get(path)
        if cached is not None:
            self._cache.move_to_end(path)
            return cached
        wave, rate = read_audio(path)
        log_mel = self.front_end(wave, rate, self.cfg.trim_db if self.cfg.trim_silence else None).contiguous()
        size = log_mel.numel() * log_mel.element_size()
        if size <= self.budget:
            self._cache[path] = log_mel
            self.used += size
            while self.used > self.budget:
                _, old = self._cache.popitem(last=False)
                self.used -= old.numel() * old.element_size()
        return log_mel

    def frames(self, path: Path) -> int:
        """Frames of a file: from its header when nothing is trimmed, else from its features."""
        if self.cfg.trim_silence:
            return self.features(path).shape[-1]
        samples, rate = audio_info(path)
        return self.front_end.frames(self.front_end.resampled_length(samples, rate))


class ClipDataset(Dataset):
    """Shared item logic: features of a file -> normalised clip of T frames."""

    def __init__(self, store: FeatureStore, files: list[Path], normalizer: Normalizer, clip_frames: int,
                 labels: Sequence[int] | None = None):
        self.store, self.files, self.normalizer, self.clip_frames = store, files, normalizer, clip_frames
        self.pad_value = store.front_end.log_floor
        #: the class of each file (index into the source's classes), or None without labels
        self.labels = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
        if self.labels is not None and len(self.labels) != len(files):
            raise ValueError(f"{len(self.labels)} labels for {len(files)} files")

    def window(self, features: torch.Tensor, start: int, file: int) -> dict:
        clip, real = crop_or_pad(features, start, self.clip_frames, self.pad_value)
        item = {"x": self.normalizer.normalize(clip).unsqueeze(0), "length": torch.tensor(real)}
        if self.labels is not None:
            item["label"] = self.labels[file]   # every clip of a recording carries its label
        return item


class RandomClipDataset(ClipDataset):
    """Training: one random window per file and access."""

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        features = self.store.features(self.files[i])   # decoded once: the cache may not hold it
        room = features.shape[-1] - self.clip_frames
        start = int(torch.randint(0, room + 1, ())) if room > 0 else 0
        return self.window(features, start, i)


class TiledClipDataset(ClipDataset):
    """Evaluation: every file cut into consecutive windows; the plan reads each file's length once."""

    def __init__(self, store, files, normalizer, clip_frames, labels=None):
        super().__init__(store, files, normalizer, clip_frames, labels)
        self.plan = [(f, t) for f, path in enumerate(files) for t in range(tiles(store.frames(path), clip_frames))]

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict:
        file, tile = self.plan[i]
        return self.window(self.store.features(self.files[file]), tile * self.clip_frames, file)


class AudioSource:
    """The files of ``data.path`` and which of them form which split."""

    def __init__(self, cfg: DataConfig, front_end: FrontEnd):
        self.cfg = cfg
        if not cfg.path.is_dir():
            raise InputError(f"{cfg.path}: data.path must be a folder of audio files")
        files = list_audio(cfg.path, cfg.extensions)
        #: with data.labels = "folder": the class names (sorted, over every recording of the
        #: folder, before max_files and the splits) and each file's class; else None
        self.classes: list[str] | None = None
        self.label_of: dict[Path, int] | None = None
        if cfg.labels == "folder":
            self.classes, ids = folder_classes(cfg.path, files, cfg.label_depth)
            self.label_of = dict(zip(files, ids))
        if cfg.max_files and cfg.max_files < len(files):
            _, chosen = split_indices(len(files), cfg.max_files / len(files), cfg.split_seed * 10 + 3)
            files = [files[i] for i in chosen]
        if len(files) < 3:
            raise InputError(f"{cfg.path}: found {len(files)} audio files ({', '.join(cfg.extensions)}); "
                             "at least 3 are needed for train, validation and test splits")
        # Test is held out first, then validation from the rest, each a share of the whole folder.
        rest, test = split_indices(len(files), cfg.test_fraction, cfg.split_seed * 10 + 1)
        keep, held = split_indices(len(rest), min(1.0, cfg.validation_fraction * len(files) / len(rest)),
                                   cfg.split_seed * 10 + 2)
        self.files = {
            "train": [files[rest[i]] for i in keep],
            "validation": [files[rest[i]] for i in held],
            "test": [files[i] for i in test],
        }
        if not self.files["train"]:
            raise InputError(f"{cfg.path}: {len(files)} files leave no training split; lower the held-out fractions")
        self.store = FeatureStore(front_end, cfg)

    def training_features(self, limit: int = 0):
        """Log-mel of the training files (a seeded subset of ``limit`` when set), for the statistics."""
        files = self.files["train"]
        if limit and limit < len(files):
            _, chosen = split_indices(len(files), limit / len(files), self.cfg.split_seed * 10 + 4)
            files = [files[i] for i in chosen]
        for path in files:
            yield self.store.features(path)

    def split(self, split: str, normalizer: Normalizer) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        kind = RandomClipDataset if split == "train" else TiledClipDataset
        files = self.files[split]
        labels = None if self.label_of is None else [self.label_of[f] for f in files]
        return kind(self.store, files, normalizer, self.cfg.clip_frames, labels)
