"""The image modality's recipe sections: [data] and [model]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vaezoo import option

LABEL_COLUMN = "label"   # data.label_column's default: a data set without it simply has no labels


@dataclass
class DataConfig:
    path: Path = option(
        help="an MNIST-format folder (train-images-idx3-ubyte[.gz] ...), a folder of PNG/JPEG images, or (format 'hf') "
             "a Hugging Face dataset on disk: a save_to_disk folder, a .parquet file or a folder of them",
        must_exist=True,
    )
    format: Literal["auto", "idx", "folder", "hf"] = option(
        "auto", help="'idx' for MNIST-format files, 'folder' for images, 'hf' for a Hugging Face dataset on disk (read "
                     "with pyarrow, never downloaded); 'auto' looks for train-images-idx3-ubyte[.gz], then for "
                     "state.json, dataset_dict.json or .parquet files"
    )
    image_column: str = option("image", help="format 'hf': the column of images (an Image feature, or encoded bytes)")
    label_column: str = option(
        LABEL_COLUMN, help="format 'hf', labels = true: the column of integer classes (a ClassLabel column gives "
                           "label_names); a data set without a 'label' column has no labels"
    )
    size: int = option(28, min=1, help="images are center-cropped to a square and resized to size x size pixels")
    color: Literal["gray", "rgb"] = option("gray", help="channels: 'gray' (1) or 'rgb' (3)")
    labels: bool = option(
        True, help="attach integer labels when the data has them: IDX label files, class sub-folders, or label_column"
    )
    binarize: Literal["none", "dynamic"] = option(
        "none",
        help="'dynamic': each training pass draws x ~ Bernoulli(intensity); validation/test use one fixed seeded draw",
    )
    validation_fraction: float = option(
        0.1, gt=0.0, max=0.5, help="share of the training data held out for validation when there is no validation split"
    )
    test_fraction: float = option(
        0.1, gt=0.0, max=0.5, help="share held out for testing when an image folder has no test/ sub-folder "
                                   "(a Hugging Face dataset no test split)"
    )
    split_seed: int = option(0, min=0, help="seed of the held-out splits (kept apart from the training seed)")
    max_train_examples: int = option(0, min=0, help="train on a seeded random subset of this size (0 = all)")
    label_names: list[str] = option(
        [], help="names of the integer labels (index i -> name) for legends; class sub-folders and ClassLabel "
                 "columns name themselves"
    )
    factors: bool = option(
        False,
        help="IDX data only: batches also carry \"factors\" [N, F], the ground-truth factor indices of a generated set "
             "({train,t10k}-factors-idx2-ubyte[.gz], names in factors.json; python -m vaezoo_image.shapes writes them), "
             "for vaezoo disentanglement",
    )


@dataclass
class ModelConfig:
    architecture: Literal["conv", "mlp"] = option("conv", help="convolutional or fully connected networks")
    likelihood: Literal["bernoulli", "gaussian", "laplace"] = option(
        "bernoulli", help="p(x|z): 'bernoulli' on [0, 1] intensities or binarized pixels, 'gaussian' or 'laplace'"
    )
    scale: float | Literal["learned"] = option(
        "learned", gt=0.0, help="gaussian/laplace: a fixed scale (a number) or 'learned' (one per channel)"
    )
    activation: Literal["relu", "elu", "silu", "tanh"] = option("relu", help="non-linearity after every hidden layer")
    # conv
    channels: list[int] = option([32, 64], min=1, help="conv: widths of the stages; each stage halves the resolution")
    kernel_size: int = option(3, min=1, help="conv: kernel side (odd)")
    norm: Literal["none", "batch", "group"] = option("none", help="conv: normalization after each convolution")
    groups: int = option(8, min=1, help="conv: groups of norm = 'group' (must divide every width)")
    residual_blocks: int = option(0, min=0, help="conv: residual blocks after each stage's resampling")
    upsampling: Literal["transposed", "nearest"] = option(
        "transposed", help="conv decoder: stride-2 transposed convolution, or nearest upsampling then a convolution"
    )
    # mlp
    hidden: list[int] = option([512], min=1, help="mlp: hidden sizes of the encoder; the decoder uses them reversed")

    def check(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: must be odd so 'same' padding keeps sizes exact, got {self.kernel_size}")
        if self.architecture == "conv" and not self.channels:
            raise ValueError("channels: architecture = 'conv' needs at least one stage width, e.g. channels = [32, 64]")
        if self.architecture == "conv" and self.norm == "group":
            bad = [c for c in self.channels if c % self.groups]
            if bad:
                raise ValueError(f"groups = {self.groups} must divide every width in channels; it does not divide {bad}")
