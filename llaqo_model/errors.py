"""User-facing errors: each carries one readable line; the CLI and server print it, never a traceback."""


class LlaqoError(Exception):
    """Base class for problems caused by the user's input or set-up."""

    code = "error"


class AudioError(LlaqoError, ValueError):
    """The audio cannot be analysed."""

    code = "bad_audio"


class ScoreError(LlaqoError, ValueError):
    """The score cannot be read or is not a score."""

    code = "bad_score"


class ModelError(LlaqoError):
    """A model checkpoint is missing, incomplete or mismatched."""

    code = "bad_model"
