"""User-facing errors.

Everything a user can get wrong (a recipe, a run directory, an input file) raises a
``VaezooError``. The CLI prints its message on one line and exits with its ``exit_code``;
no traceback reaches the user.
"""

from __future__ import annotations

from typing import Sequence


class VaezooError(Exception):
    """An error caused by user input, reported as one clear message."""

    exit_code = 1


class RecipeError(VaezooError):
    """A recipe is malformed: syntax, unknown key, wrong type, out of range, missing file.

    One error may hold several problems (``problems``, each a ``RecipeError`` naming one key):
    validation reports every problem of a recipe at once, one per line of the message.
    """

    exit_code = 2

    def __init__(self, source: str, key: str | None, message: str):
        self.source = source
        self.key = key
        self.message = message
        #: the single problems this error stands for: itself, or those ``combine`` joined
        self.problems: list[RecipeError] = [self]
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")

    @classmethod
    def combine(cls, errors: Sequence[RecipeError]) -> RecipeError:
        """One error for all the problems of ``errors`` (in order): the error itself when there
        is one problem, else one whose message lists them, one ``FILE: [section] key: ...`` per line."""
        problems = [problem for err in errors for problem in err.problems]
        if not problems:
            raise ValueError("RecipeError.combine needs at least one error")
        if len(problems) == 1:
            return problems[0]
        text = "\n".join(str(problem) for problem in problems)
        combined = cls(problems[0].source, None, text)
        combined.args = (text,)
        combined.problems = problems
        return combined


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
