"""vaezoo-tabular: a VAE for CSV tables with real and categorical columns and missing cells.

The plugin class loads at once; ``impute`` and ``predict`` (torch) load on first use, so
discovering the plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vaezoo_tabular.modality import TabularModality

# public name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {"impute": "vaezoo_tabular.imputation", "predict": "vaezoo_tabular.imputation"}

__all__ = ["TabularModality", "impute", "predict"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vaezoo_tabular' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from vaezoo_tabular.imputation import impute, predict
