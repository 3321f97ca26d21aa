"""The installed vaezoo version, from the package metadata (one source: pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vaezoo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
