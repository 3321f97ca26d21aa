"""A tiny modality written only against the public plugin API, for the core's tests.

Data: points on a noisy 2-D manifold embedded in ``dim`` dimensions (deterministic, built
in memory). Model: MLP encoder, MLP decoder with a Gaussian likelihood of learned scale.
Recipes name it by import path: ``modality = "tiny_modality:TinyVectors"`` (tests/ is on
sys.path through conftest.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import vaezoo
from vaezoo import Gaussian, Modality, option
from vaezoo.nn import append_condition


@dataclass
class TinyData:
    n: int = option(256, min=8, help="examples in the training split")
    dim: int = option(8, min=2, help="dimension of each vector")
    noise: float = option(0.05, min=0.0)
    csv: Path | None = option(None, must_exist=True, help="read training vectors from this CSV instead")


@dataclass
class TinyModel:
    hidden: int = option(32, min=1)


def make_points(n: int, dim: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, generator=g) * 2 * math.pi
    radius = 1 + 0.5 * torch.rand(n, generator=g)
    base = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)
    mix = torch.randn(2, dim, generator=torch.Generator().manual_seed(1234))
    return base @ mix + noise * torch.randn(n, dim, generator=g)


class Encoder(nn.Module):
    def __init__(self, dim: int, hidden: int, latent: int, condition_dim: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + condition_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))

    def forward(self, batch):
        mean, logvar = self.net(append_condition(batch["x"], batch)).chunk(2, -1)
        return mean, logvar


class Decoder(nn.Module):
    def __init__(self, dim: int, hidden: int, latent: int):   # latent: the decoder's input size
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z):
        return Gaussian(self.net(z), self.log_scale)


class TinyVectors(Modality):
    name = "tiny"
    api_version = vaezoo.PLUGIN_API_VERSION
    sections = {"data": TinyData, "model": TinyModel}
    description = "vectors on a noisy ring, for tests"

    def dataset(self, split):
        d = self.recipe.data
        if d.csv is not None and split == "train":
            return TensorDataset(torch.tensor([[float(v) for v in line.split(",")] for line in d.csv.read_text().split()]))
        n = d.n if split == "train" else max(8, d.n // 4)
        seed = {"train": 0, "validation": 1, "test": 2}[split]
        return TensorDataset(make_points(n, d.dim, d.noise, seed))

    def collate(self, examples):
        return {"x": torch.stack([e[0] for e in examples])}

    def build_encoder(self):
        return Encoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim, self.encoder_condition_dim)

    def build_decoder(self):
        return Decoder(self.recipe.data.dim, self.recipe.model.hidden, self.decoder_input_dim)

    def load_inputs(self, items):
        rows = []
        for item in items:
            try:
                rows.append([float(v) for v in item.split(",")])
            except ValueError:
                raise vaezoo.InputError(f"input {item!r}: expected {self.recipe.data.dim} comma-separated numbers") from None
        return {"x": torch.tensor(rows)}

    def write_samples(self, px, stem: Path):
        path = Path(f"{stem}.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(",".join(f"{v:.5f}" for v in row) for row in px.mean.flatten(1).tolist()) + "\n")
        return [path]


# A recipe for this modality that trains in well under a second.
TINY_RECIPE = """\
modality = "tiny_modality:TinyVectors"
name = "tiny"
seed = 3

[latent]
dim = 2

[data]
n = 128
dim = 6

[model]
hidden = 16

[objective]
kl_schedule = "linear"
kl_warmup_steps = 10

[train]
epochs = 3
batch_size = 16
lr = 0.01
log_every = 1
samples = 5
tensorboard = false

[eval]
iw_samples = 20
"""


class LabelledTiny(TinyVectors):
    """TinyVectors whose batches also carry ``"label"`` (the optional class convention): the
    signs of each vector's first two coordinates, four classes with names."""

    def dataset(self, split):
        points = super().dataset(split).tensors[0]
        return TensorDataset(points, (points[:, 0] > 0).long() * 2 + (points[:, 1] > 0).long())

    def collate(self, examples):
        return {"x": torch.stack([e[0] for e in examples]), "label": torch.stack([e[1] for e in examples])}

    @property
    def label_names(self):
        return ["--", "-+", "+-", "++"]


class TinyImages(TinyVectors):
    """TinyVectors drawn as one-channel planes: the ring embedded in ``data.dim`` = side^2
    dimensions, each example ``[1, side, side]``. Image-like inputs, so the core's generic
    discriminator applies (the adversarial stage's tests)."""

    name = "tiny-images"

    @property
    def side(self) -> int:
        side = math.isqrt(self.recipe.data.dim)
        if side * side != self.recipe.data.dim:
            raise ValueError(f"data.dim must be a square for tiny images, got {self.recipe.data.dim}")
        return side

    def dataset(self, split):
        points = super().dataset(split).tensors[0]
        return TensorDataset(points.view(-1, 1, self.side, self.side))

    def build_encoder(self):
        return PlaneEncoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim,
                            self.encoder_condition_dim)

    def build_decoder(self):
        return PlaneDecoder(self.recipe.data.dim, self.recipe.model.hidden, self.decoder_input_dim, self.side)

    def pseudo_inputs(self, k):
        from vaezoo.nn import PseudoInputs

        return PseudoInputs(k, (1, self.side, self.side), squash="none")


class PlaneEncoder(Encoder):
    def forward(self, batch):
        return super().forward({**batch, "x": batch["x"].flatten(1)})


class PlaneDecoder(Decoder):
    def __init__(self, dim: int, hidden: int, latent: int, side: int):
        super().__init__(dim, hidden, latent)
        self.side = side

    def forward(self, z):
        shape = (1, self.side, self.side)
        return Gaussian(self.net(z).view(-1, *shape), self.log_scale.view(shape))


# TINY_RECIPE on 4x4 planes with the adversarial stage on from step 4.
TINY_GAN_RECIPE = (TINY_RECIPE.replace("tiny_modality:TinyVectors", "tiny_modality:TinyImages")
                   .replace("dim = 6", "dim = 16")
                   + "\n[adversarial]\nenabled = true\nstart_step = 4\nchannels = 4\n")


class OldLabelledTiny(LabelledTiny):
    """LabelledTiny as a plugin written for plugin API 1.3: refused for conditional recipes."""

    api_version = (1, 3)


class OutOfRangeTiny(LabelledTiny):
    """LabelledTiny without class names: a recipe may claim fewer classes than its labels hold."""

    @property
    def label_names(self):
        return None


class LabelledTinyImages(TinyImages):
    """TinyImages with LabelledTiny's four named classes (a conditional VAE-GAN's tests)."""

    def dataset(self, split):
        planes = super().dataset(split).tensors[0]
        flat = planes.flatten(1)
        return TensorDataset(planes, (flat[:, 0] > 0).long() * 2 + (flat[:, 1] > 0).long())

    def collate(self, examples):
        return LabelledTiny.collate(self, examples)

    @property
    def label_names(self):
        return ["--", "-+", "+-", "++"]


class UnsizedDecoderTiny(LabelledTiny):
    """Declares plugin API 1.4 but sizes its decoder by latent.dim, not decoder_input_dim."""

    def build_decoder(self):
        return Decoder(self.recipe.data.dim, self.recipe.model.hidden, self.recipe.latent.dim)
