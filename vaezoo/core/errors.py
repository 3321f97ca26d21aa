"""User-facing errors.

Everything a user can get wrong (a recipe, a run directory, an input file) raises a
``VaezooError``. The CLI prints its message on one line and exits with its ``exit_code``;
no traceback reaches the user.
"""

from __future__ import annotations


class VaezooError(Exception):
    """An error caused by user input, reported as one clear message."""

    exit_code = 1


class RecipeError(VaezooError):
    """A recipe is malformed: syntax, unknown key, wrong type, out of range, missing file."""

    exit_code = 2

    def __init__(self, source: str, key: str | None, message: str):
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


class PluginError(VaezooError):
    """A modality plugin is unknown, failed to import or targets another plugin-API version."""

    exit_code = 2


class RunDirError(VaezooError):
    """A run directory is missing, incomplete or inconsistent."""

    exit_code = 2


class InputError(VaezooError):
    """An input file or value given on the command line cannot be used."""

    exit_code = 2


class TrainingDiverged(VaezooError):
    """The loss or the gradients became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3
