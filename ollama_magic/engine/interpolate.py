"""Filling ``{name}`` placeholders in a prompt from the user's namespace.

People paste JSON, code and templates into prompts, so only what is clearly a
placeholder is filled: ``{`` + a Python identifier, optionally followed by ``.attr`` and
``[index]`` parts, an optional ``!r``/``!s``/``!a`` conversion and an optional format
spec (``:.2f``; no spaces, quotes or braces in it) + ``}``.  Everything else (``{"a":
1}``, ``{ }``, ``{1,2}``, ``function() { return x; }``) is sent exactly as typed.

``{{`` gives a literal ``{`` (so ``{{name}}`` sends ``{name}``), and a ``}}`` closing
such an escape gives ``}``; any other ``}}`` stays as typed, so nested JSON such as
``{"a": {"b": 1}}`` is never changed.  A clear placeholder that names an unknown variable
is a one-line error: sending the prompt with a hole in it would waste the model's time.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError


def _hint(placeholder: str) -> str:
    return f"to send it as typed, write {{{placeholder}}} (or use --no-interpolate)"


_NAME = r"[^\W\d]\w*"
#: ``{name}``, ``{obj.attr}``, ``{seq[0]}``, ``{d[key]}``, with ``!r`` and ``:spec``.
_PLACEHOLDER = re.compile(
    r"\{(?P<field>" + _NAME + r"(?:\." + _NAME + r"|\[[^\[\]{}\s]+\])*)"
    r"(?:!(?P<conversion>[rsa]))?"
    r"(?::(?P<spec>[^{}\s\"']*))?\}"
)
_FORMATTER = string.Formatter()


def _fill(match: re.Match[str], namespace: Mapping[str, Any]) -> str:
    placeholder = match.group(0)
    field = match.group("field")
    try:
        value, _ = _FORMATTER.get_field(field, (), namespace)
    except KeyError as exc:
        name = re.match(_NAME, field)
        missing = exc.args[0] if exc.args else field
        if name is not None and missing == name.group(0):
            raise InvalidRequestError(
                f"The prompt uses {placeholder}, but there is no variable {missing!r}: {_hint(placeholder)}."
            ) from None
        raise InvalidRequestError(
            f"Cannot fill {placeholder} in the prompt (no key {missing!r}): {_hint(placeholder)}."
        ) from None
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"Cannot fill {placeholder} in the prompt ({type(exc).__name__}: {exc}): {_hint(placeholder)}."
        ) from None
    try:
        value = _FORMATTER.convert_field(value, match.group("conversion"))
        return format(value, match.group("spec") or "")
    except Exception as exc:  # a user's __format__ / __repr__ can raise anything
        raise InvalidRequestError(
            f"Cannot fill {placeholder} in the prompt ({type(exc).__name__}: {exc}): {_hint(placeholder)}."
        ) from None


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Return ``template`` with its clear ``{...}`` placeholders filled from ``namespace``.

    >>> interpolate("Hi {name}, {{name}} {n:03d} {xs[1]}", {"name": "Ada", "n": 7, "xs": [1, 2]})
    'Hi Ada, {name} 007 2'
    >>> interpolate('As YAML: {"user": {"name": "Ada"}} and {1,2} and { }', {})
    'As YAML: {"user": {"name": "Ada"}} and {1,2} and { }'
    """
    if "{" not in template and "}" not in template:
        return template
    out: list[str] = []
    escapes = 0  # ``{{`` seen and not yet closed by ``}}``
    pos = 0
    length = len(template)
    while pos < length:
        brace = min((i for i in (template.find("{", pos), template.find("}", pos)) if i >= 0), default=-1)
        if brace < 0:
            out.append(template[pos:])
            break
        out.append(template[pos:brace])
        if template[brace] == "{":
            if template.startswith("{{", brace):
                out.append("{")
                escapes += 1
                pos = brace + 2
                continue
            match = _PLACEHOLDER.match(template, brace)
            if match is not None:
                out.append(_fill(match, namespace))
                pos = match.end()
                continue
            out.append("{")
            pos = brace + 1
        else:
            if escapes and template.startswith("}}", brace):
                out.append("}")
                escapes -= 1
                pos = brace + 2
                continue
            out.append("}")
            pos = brace + 1
    return "".join(out)
