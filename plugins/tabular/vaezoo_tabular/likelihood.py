"""p(x | z) for a row of mixed columns: a Gaussian per real column, a Categorical per categorical one.

The row's log-likelihood is the sum of its columns' terms over the observed cells only
(HI-VAE, Nazabal et al. 2020). vaezoo's likelihoods already drop masked cells before the
density is computed, so a missing cell contributes nothing whatever x holds there.
Real columns are standardised, so this is the log-likelihood of the standardised table
(it differs from the raw table's by the constant sum of the columns' log sd).
"""

from __future__ import annotations

import torch

import vaezoo


class MixedColumns:
    """Rows x [M, C]: real columns hold values, categorical columns class indices (as floats)."""

    def __init__(self, real: vaezoo.Gaussian, real_cols: list[int], cats: list[vaezoo.Categorical], cat_cols: list[int]):
        self.real, self.real_cols, self.cats, self.cat_cols = real, real_cols, cats, cat_cols

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_observed | z), one value per row [M]."""
        lp = x.new_zeros(self.real.loc.shape[0])
        if self.real_cols:
            lp = lp + self.real.log_prob(x[:, self.real_cols], None if mask is None else mask[:, self.real_cols])
        for col, dist in zip(self.cat_cols, self.cats):
            lp = lp + dist.log_prob(x[:, col], None if mask is None else mask[:, col])
        return lp

    def _table(self, reals: torch.Tensor, cats: list[torch.Tensor]) -> torch.Tensor:
        out = reals.new_empty(reals.shape[0], len(self.real_cols) + len(self.cat_cols))
        out[:, self.real_cols] = reals
        for col, values in zip(self.cat_cols, cats):
            out[:, col] = values.to(out.dtype)
        return out

    @property
    def mean(self) -> torch.Tensor:
        """[M, C]: the Gaussian means and, per categorical column, the most probable class."""
        return self._table(self.real.mean, [dist.mode for dist in self.cats])

    @property
    def probs(self) -> list[torch.Tensor]:
        """Class probabilities [M, K_j] of each categorical column."""
        return [dist.probs for dist in self.cats]

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._table(self.real.sample(generator), [dist.sample(generator) for dist in self.cats])
