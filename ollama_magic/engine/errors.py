"""Errors a person can act on.

Every failure that reaches a notebook user is one of these, with a message of one line
that says what happened and what to do.  They carry ``_render_traceback_``, the hook
IPython uses to show an exception: the cell fails (so "Run all" stops there) but shows
that single line instead of a wall of traceback.  Nothing here imports IPython.
"""

from __future__ import annotations


class OllamaMagicError(Exception):
    """Base class: a failure explained in one line."""

    def _render_traceback_(self) -> list[str]:
        # The message may quote the server (an error text, a model name): shown without
        # escape sequences, so it cannot drive the terminal or the notebook's ANSI renderer.
        from .terminal import printable

        return [printable(f"{type(self).__name__}: {self}")]


class OllamaConnectionError(OllamaMagicError):
    """The server could not be reached (down, wrong host, or it went away mid-answer)."""


class OllamaTimeoutError(OllamaConnectionError):
    """The server did not answer within the configured timeout."""


class OllamaResponseError(OllamaMagicError):
    """The server answered with an error (an HTTP status, or an ``error`` line in a stream).

    ``status_code`` is the HTTP status, or -1 when the error arrived inside a 200 stream,
    as in the official client.
    """

    def __init__(self, message: str, status_code: int = -1) -> None:
        super().__init__(message)
        self.error = message
        self.status_code = status_code


class OllamaBusyError(OllamaResponseError):
    """The server stayed busy (HTTP 503 or 429) through every retry allowed."""


class ModelNotFoundError(OllamaResponseError):
    """The requested model is not on the server."""


class SchemaError(OllamaMagicError, ValueError):
    """A ``format`` schema is not a valid JSON Schema; nothing was sent."""


class GenerationInterrupted(OllamaMagicError):
    """The user interrupted a generation; what arrived before is in ``partial``."""

    def __init__(self, message: str, partial: object = None) -> None:
        super().__init__(message)
        self.partial = partial

    def _render_traceback_(self) -> list[str]:
        # The person pressed stop: a calm sentence, not an exception's name.  (It must not
        # be empty: JupyterLab shows "ename: evalue" for an error with no traceback.)
        return [str(self)]


class InvalidRequestError(OllamaMagicError, ValueError):
    """The arguments cannot make a valid request; nothing was sent."""
