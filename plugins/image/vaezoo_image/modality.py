"""The image modality: what vaezoo's core calls to train and use an image VAE.

Importing this module is cheap: torch and the data, network and writer modules load inside
the methods that use them, so `vaezoo plugins`, `vaezoo recipes` and `vaezoo options` read
the class's sections without paying for torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import vaezoo
from vaezoo import InputError, Modality

from vaezoo_image.config import DataConfig, ModelConfig

IMAGE_CACHE = "image-data"   # IDX and Hugging Face images decoded once, memory-mapped (vaezoo_image.data)

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from vaezoo_image.data import FolderSource, IdxSource
    from vaezoo_image.hf_source import HFSource


class ImageModality(Modality):
    name = "image"
    api_version = vaezoo.PLUGIN_API_VERSION
    sections = {"data": DataConfig, "model": ModelConfig}
    description = "images: MNIST-format IDX, PNG/JPEG folders, Hugging Face datasets on disk; conv or MLP networks; PNG grids"
    # `vaezoo plugins check image` reads no data (see example_batch): the path is a placeholder.
    example_recipe = {"data": {"path": "."}}

    def __init__(self, recipe, run_dir: Path | None = None):
        super().__init__(recipe, run_dir)
        self._source: IdxSource | FolderSource | HFSource | None = None  # opened on first use: sampling from a run needs no data

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image, known from the recipe alone."""
        d: DataConfig = self.recipe.data
        return (1 if d.color == "gray" else 3, d.size, d.size)

    # -- data -------------------------------------------------------------------------------
    def _open_source(self) -> IdxSource | FolderSource | HFSource:
        if self._source is None:
            from vaezoo_image import data

            cache = None if self.run_dir is None else self.run_dir / IMAGE_CACHE
            self._source = data.open_source(self.recipe.data, cache)
        return self._source

    def dataset(self, split: str) -> Dataset:
        return self._open_source().split(split)

    @property
    def label_names(self) -> list[str] | None:
        """``data.label_names`` when the recipe gives them (IDX labels are bare integers), else
        the class sub-folder names of an image folder or a ClassLabel column's names."""
        if self.recipe.data.label_names:
            return list(self.recipe.data.label_names)
        return getattr(self._open_source(), "classes", None)

    @property
    def factor_names(self) -> list[str] | None:
        """With ``data.factors = true``, the names of the ``"factors"`` columns (factors.json), for
        `vaezoo disentanglement`; None otherwise."""
        return getattr(self._open_source(), "factor_names", None) if self.recipe.data.factors else None

    def example_batch(self, n: int = 4) -> vaezoo.Batch:
        """Random images of the recipe's shape, binarized when training binarizes, with labels."""
        import torch

        x = torch.rand(n, *self.shape)
        if self.recipe.data.binarize == "dynamic":
            x = torch.bernoulli(x)
        return {"x": x, "label": torch.arange(n) % 10}

    def load_inputs(self, items: Sequence[str]) -> vaezoo.Batch:
        """Image files given on the command line, preprocessed as the evaluation splits are."""
        import torch

        from vaezoo_image import data

        d: DataConfig = self.recipe.data
        images = []
        for i, item in enumerate(items):
            x = data.load_image(Path(item), d.size, d.color).float() / 255.0
            if d.binarize == "dynamic":
                # One fixed draw per input position, like the validation and test splits.
                x = torch.bernoulli(x, generator=torch.Generator().manual_seed(vaezoo.derive_seed(d.split_seed, "binarize", i)))
            images.append(x)
        if not images:
            raise InputError("no input images given")
        return {"x": torch.stack(images)}

    # -- networks ---------------------------------------------------------------------------
    def build_encoder(self) -> nn.Module:
        from vaezoo_image import networks

        return networks.build_encoder(self.shape, self.recipe.latent.dim, self.recipe.model, self.encoder_condition_dim)

    def build_decoder(self) -> nn.Module:
        from vaezoo_image import networks

        return networks.build_decoder(self.shape, self.decoder_input_dim, self.recipe.model)

    def pseudo_inputs(self, k: int) -> nn.Module:
        """The VampPrior's pseudo-images: ``k`` learned images in (0, 1), of the recipe's size."""
        from vaezoo.nn import PseudoInputs

        return PseudoInputs(k, self.shape, squash="sigmoid")

    # -- writers ----------------------------------------------------------------------------
    def write_samples(self, px, stem: Path) -> list[Path]:
        from vaezoo_image import writers

        return writers.write_samples(px.mean, stem)

    def write_reconstructions(self, batch: vaezoo.Batch, px, stem: Path) -> list[Path]:
        from vaezoo_image import writers

        return writers.write_reconstructions(batch["x"], px.mean, stem)

    def write_interpolations(self, px, steps: int, stem: Path) -> list[Path]:
        from vaezoo_image import writers

        return writers.write_rows(px.mean, steps, stem)

    def write_traversal(self, vae: vaezoo.VAE, stem: Path, *, z: torch.Tensor | None = None, steps: int = 9,
                        span: float = 3.0, dims: list[int] | None = None, condition: int | None = None) -> list[Path]:
        """A latent traversal grid: one row per latent dimension, ``steps`` values in [-span, span]
        (decoded as class ``condition`` for a conditional model)."""
        from vaezoo_image import writers

        _, px = writers.latent_traversal(vae, z, steps=steps, span=span, dims=dims, condition=condition)
        return writers.write_rows(px.mean, steps, stem)
