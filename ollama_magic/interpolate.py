"""Filling ``{name}`` placeholders in a prompt from the user's namespace.

``str.format_map`` semantics, so ``{obj.attr}``, ``{seq[0]}`` and ``{x:.2f}`` work and
``{{``/``}}`` give literal braces.  A prompt that names something unknown is a mistake
we explain in one line, since users paste JSON and code into prompts (jupyter-ai's
``%%ai`` crashes there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError

_HINT = "write {{ and }} for literal braces, or use --no-interpolate to send the text as it is"


class _Namespace(dict[str, Any]):
    """A read-only view of the namespace whose misses raise a clear error."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        super().__init__()
        self._namespace = namespace

    def __missing__(self, key: str) -> Any:
        try:
            return self._namespace[key]
        except KeyError:
            raise InvalidRequestError(
                f"The prompt uses {{{key}}}, but there is no variable {key!r}: {_HINT}."
            ) from None


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Return ``template`` with ``{...}`` placeholders filled from ``namespace``.

    >>> interpolate("Hi {name}, {{literal}} {n:03d} {xs[1]}", {"name": "Ada", "n": 7, "xs": [1, 2]})
    'Hi Ada, {literal} 007 2'
    """
    if "{" not in template and "}" not in template:
        return template
    try:
        return template.format_map(_Namespace(namespace))
    except InvalidRequestError:
        raise
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"Cannot fill the prompt's placeholders ({type(exc).__name__}: {exc}): {_HINT}."
        ) from None
