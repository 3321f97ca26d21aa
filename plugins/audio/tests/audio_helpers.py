"""Shared helpers for the audio plugin's tests: synthetic sounds written by the tests, tiny recipes."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomli_w
import torch

from vaezoo.plugin.recipes import build_recipe

RATE = 8000          # tiny features: 8 kHz, n_fft 256, hop 64, 32 mel bands, clips of 16 frames
HOP = 64
CLIP_FRAMES = 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models and FFTs run fastest on one thread, and other jobs share the cores; the
    previous setting is restored afterwards. Test modules import this fixture to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sine_sweep(seconds: float, rate: int = RATE, f0: float = 100.0, f1: float = 3000.0, amplitude: float = 0.5) -> np.ndarray:
    """An exponential sine sweep from ``f0`` to ``f1`` Hz, float32 ``[seconds * rate]``."""
    t = np.arange(round(seconds * rate)) / rate
    k = math.log(f1 / f0) / seconds
    return (amplitude * np.sin(2 * math.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def tone(seconds: float, freq: float, rate: int = RATE, amplitude: float = 0.4) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int = RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, **kwargs)
    return path


def sound_folder(folder: Path, n: int = 12) -> Path:
    """``n`` short sounds: sweeps and tones of varied pitch and length (some shorter than a clip)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        seconds = float(rng.uniform(0.05, 0.4))
        if i % 2:
            samples = sine_sweep(seconds, f0=float(rng.uniform(100, 400)), f1=float(rng.uniform(1000, 3500)))
        else:
            samples = tone(seconds, float(rng.uniform(150, 2500)))
        write_audio(folder / f"sound-{i:02d}.wav", samples)
    return folder


def recipe_text(folder: Path, /, **sections: dict) -> str:
    tables = {
        "latent": {"dim": 4},
        "data": {"path": str(folder), "clip_frames": CLIP_FRAMES, "validation_fraction": 0.2, "test_fraction": 0.2},
        "features": {"sample_rate": RATE, "n_fft": 256, "hop_length": HOP, "n_mels": 32},
        "model": {"channels": [4, 8]},
        "inversion": {"iterations": 8},
        "objective": {"kl_schedule": "linear", "kl_warmup_steps": 10},
        "train": {"epochs": 2, "batch_size": 4, "lr": 0.005, "log_every": 2, "samples": 3, "tensorboard": False},
        "eval": {"iw_samples": 3, "batch_size": 8, "chunk_size": 3},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    return tomli_w.dumps({"modality": "audio", "name": "tiny-audio", "seed": 0, **tables})


def make_recipe(folder: Path, /, **sections: dict):
    return build_recipe(tomllib.loads(recipe_text(folder, **sections)), source="<test>", base_dir=folder.parent)
