"""Network blocks for plugin authors: the public name of ``vaezoo.core.nn``."""

from vaezoo.core.nn import *  # noqa: F401,F403
from vaezoo.core.nn import __all__  # noqa: F401
