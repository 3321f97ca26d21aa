"""FID-FMNIST: the Frechet distance of decoded images to the Fashion-MNIST test images, in the
feature space of a small classifier (shared by benchmarks/model_family.py and benchmarks/vaegan.py).

The features are the 128-unit penultimate layer (after its ReLU) of ``FMNISTNet``, a small CNN
classifier trained once on the 60,000 Fashion-MNIST training images (Adam 1e-3, batch 128) and
cached in benchmarks/.cache/fmnist-classifier-v{CLASSIFIER_VERSION}-e{epochs}-s{seed}.safetensors
with its test accuracy in the metadata. The distance is between Gaussians fitted to the features
of the two image sets: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), the matrix square
root's trace from two symmetric eigen-decompositions: Tr sqrt(S_a S_b) = Tr sqrt(S_a^1/2 S_b S_a^1/2).

Images go in as [N, 1, 28, 28] in [0, 1]: for a VAE, the decoder's mean image
(``prior_samples``, ``decoded_means``, ``reconstructions``). ``references`` gives the statistics
of the first N test images and the distance of N random training images to them (the floor of
the measure at that sample size).

    import fid_fmnist   # benchmarks/ is on sys.path when a script there runs
    net, meta = fid_fmnist.feature_network(3, 0)
    reference, floor = fid_fmnist.references(net, 10_000, seed=0)
    fid = fid_fmnist.fid(net, fid_fmnist.prior_samples(vae, 10_000, seed=0), reference)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from results_log import logger

ROOT = Path(__file__).resolve().parent.parent
FMNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE = ROOT / "benchmarks" / ".cache"
CLASSIFIER_VERSION = "1"   # bump when FMNISTNet or its training changes: the cache is retrained

Stats = tuple[np.ndarray, np.ndarray]


log = logger("fid_fmnist")


# -- the feature network ----------------------------------------------------------------------------


class FMNISTNet(nn.Module):
    """conv 32 - pool - conv 64 - pool - fc 128 - fc 10 on [0, 1] images; ``features`` is the
    128-unit layer (after its ReLU), the space of the Frechet distance."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - 0.5) / 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def fmnist_arrays(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 1, 28, 28] in [0, 1] (float32) and labels [N] of the train or t10k file."""
    from vaezoo_image.data import find_idx, read_idx

    images = torch.from_numpy(read_idx(find_idx(FMNIST, prefix, "images-idx3"))).unsqueeze(1).float().div_(255)
    labels = torch.from_numpy(read_idx(find_idx(FMNIST, prefix, "labels-idx1")).astype(np.int64))
    return images, labels


@torch.no_grad()
def accuracy(net: FMNISTNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    hits = sum(int((net(images[i:i + 1000]).argmax(1) == labels[i:i + 1000]).sum()) for i in range(0, len(images), 1000))
    return hits / len(images)


def feature_network(epochs: int, seed: int, echo: Callable[[str], None] | None = None) -> tuple[FMNISTNet, dict]:
    """The cached classifier, or a new one trained on the 60,000 training images (Adam 1e-3,
    batch 128) and saved to benchmarks/.cache/ with its test accuracy in the metadata.
    ``echo`` takes the progress messages (default: stderr)."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    echo = echo or log
    path = CACHE / f"fmnist-classifier-v{CLASSIFIER_VERSION}-e{epochs}-s{seed}.safetensors"
    net = FMNISTNet()
    if path.exists():
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        net.load_state_dict(load_file(str(path)))
        echo(f"feature network from {path.relative_to(ROOT)} (test accuracy {meta['test_accuracy']})")
        return net.eval(), {**meta, "cached": True}
    echo(f"training the feature network ({epochs} epochs on the 60,000 training images)")
    torch.manual_seed(seed)
    images, labels = fmnist_arrays("train")
    test_images, test_labels = fmnist_arrays("t10k")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), 128):
            idx = order[i:i + 128]
            loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        echo(f"feature network epoch {epoch + 1}: test accuracy {accuracy(net, test_images, test_labels):.4f}")
    meta = {"version": CLASSIFIER_VERSION, "epochs": str(epochs), "seed": str(seed),
            "train_images": str(len(images)), "test_accuracy": f"{accuracy(net, test_images, test_labels):.4f}",
            "train_seconds": f"{time.perf_counter() - started:.1f}", "features": "128 (penultimate, after ReLU)"}
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return net.eval(), {**meta, "cached": False}


# -- the distance -----------------------------------------------------------------------------------


@torch.no_grad()
def features(net: FMNISTNet, images: torch.Tensor) -> np.ndarray:
    return torch.cat([net.features(images[i:i + 1000].float()) for i in range(0, len(images), 1000)]).double().numpy()


def gaussian_stats(feats: np.ndarray) -> Stats:
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(a: Stats, b: Stats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), the trace of the root as the sum of
    the square roots of the eigenvalues of S_a^1/2 S_b S_a^1/2 (symmetric, PSD)."""
    (mu_a, s_a), (mu_b, s_b) = a, b
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_a @ s_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


def fid(net: FMNISTNet, images: torch.Tensor, reference: Stats) -> float:
    """FID-FMNIST of ``images`` [N, 1, 28, 28] in [0, 1] against ``reference`` statistics."""
    return frechet_distance(gaussian_stats(features(net, images)), reference)


def references(net: FMNISTNet, n: int, seed: int) -> tuple[Stats, float]:
    """Statistics of the first ``n`` test images, and the distance of ``n`` training images
    (a random draw seeded by ``seed``) to them: the measure's floor at this sample size."""
    test_images, _ = fmnist_arrays("t10k")
    train_images, _ = fmnist_arrays("train")
    reference = gaussian_stats(features(net, test_images[:n]))
    pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:n]
    return reference, frechet_distance(gaussian_stats(features(net, train_images[pick])), reference)


# -- images of a VAE --------------------------------------------------------------------------------


@torch.no_grad()
def decoded_means(vae, z: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The decoder's mean images of latents ``z``, on the CPU in float32."""
    p = next(vae.parameters())
    return torch.cat([vae.decode(z[i:i + batch].to(p.device, p.dtype)).mean.float().cpu()
                      for i in range(0, len(z), batch)])


@torch.no_grad()
def prior_samples(vae, n: int, seed: int, batch: int = 500) -> torch.Tensor:
    """The decoder's mean images of ``n`` draws from the model's prior (seeded)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        _, px = vae.sample(min(batch, n - i), generator=g)
        out.append(px.mean.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def reconstructions(run, n: int) -> torch.Tensor:
    """The decoder's mean images of the first ``n`` test images' posterior points (an opened run)."""
    from vaezoo.core.batches import to_device
    from vaezoo.core.data import split_batches

    out = []
    for batch in split_batches(run.modality, "test", 500, n):
        _, px = run.vae.reconstruct(to_device(batch, run.device))
        out.append(px.mean.float().cpu())
    return torch.cat(out)
