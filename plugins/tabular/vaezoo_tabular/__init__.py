"""vaezoo-tabular: a VAE for CSV tables with real and categorical columns and missing cells.

The plugin class loads at once; ``impute`` and ``predict`` (torch) load on first use, so
discovering the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import vaezoo

from vaezoo_tabular.modality import TabularModality

# public name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {"impute": "vaezoo_tabular.imputation", "predict": "vaezoo_tabular.imputation"}

__all__ = ["TabularModality", "impute", "predict"]


__getattr__, __dir__ = vaezoo.lazy_attributes(__name__, _LAZY, __all__)


if TYPE_CHECKING:
    from vaezoo_tabular.imputation import impute, predict
