"""The tiny modality with known factors: its batches carry ``"factors"`` [N, 2], for the tests of
`vaezoo disentanglement` and `vaezoo traverse` (tests/ is on sys.path through conftest.py).

Two independent factors, ``u`` (6 values) and ``v`` (4 values), place each vector on a grid in
a 2-D plane, which a fixed matrix embeds in ``dim`` dimensions with a little noise.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from tiny_modality import TINY_RECIPE, TinyVectors

SIZES = (6, 4)
RECIPE = TINY_RECIPE.replace("TinyVectors", "FactorTiny").replace("tiny_modality:", "factor_tiny:")


class FactorTiny(TinyVectors):
    def dataset(self, split):
        d = self.recipe.data
        n = d.n if split == "train" else max(8, d.n // 4)
        g = torch.Generator().manual_seed({"train": 0, "validation": 1, "test": 2}[split])
        factors = torch.stack([torch.randint(0, s, (n,), generator=g) for s in SIZES], 1)
        plane = factors.float() / (torch.tensor(SIZES) - 1) * 4 - 2
        mix = torch.randn(2, d.dim, generator=torch.Generator().manual_seed(1234))
        return TensorDataset(plane @ mix + d.noise * torch.randn(n, d.dim, generator=g), factors)

    def collate(self, examples):
        return {"x": torch.stack([e[0] for e in examples]), "factors": torch.stack([e[1] for e in examples])}

    @property
    def factor_names(self):
        return ["u", "v"]
