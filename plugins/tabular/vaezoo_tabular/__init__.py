"""vaezoo-tabular: a VAE for CSV tables with real and categorical columns and missing cells."""

from vaezoo_tabular.imputation import impute, predict
from vaezoo_tabular.modality import TabularModality

__all__ = ["TabularModality", "impute", "predict"]
