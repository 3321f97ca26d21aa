"""Package namespaces whose names load on first use (PEP 562).

    __getattr__, __dir__ = lazy_attributes(__name__, {"read_idx": "mypkg.data"}, __all__)

``import mypkg`` then imports nothing behind those names until one is used, so a command
that only needs the package's cheap parts (discovery reads a plugin's sections and recipe
folder) never pays for torch. ``vaezoo`` itself and the built-in plugins are built this way.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Iterable


def lazy_attributes(module_name: str, table: dict[str, str], public: Iterable[str]
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of module ``module_name``: each name of ``table``
    comes from the module ``table[name]``, imported when the name is first asked for."""
    module = sys.modules[module_name]
    names = sorted(set(public))

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(module, name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(names))

    return __getattr__, __dir__
