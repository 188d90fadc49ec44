"""Structured output: resolving ``format``, checking schemas before sending, and
validating answers when they arrive.

Ollama constrains output with a grammar built from the schema, but supports only part
of JSON Schema, reports a bad schema only as a terse server error, and can return
output that does not match.  So the schema is checked here with jsonschema first, the
keywords Ollama does not enforce are named, and every answer is validated locally.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonschema.exceptions import SchemaError as _JsonSchemaError
from jsonschema.validators import validator_for

from .errors import SchemaError

Format = str | dict[str, Any]

#: Keywords Ollama 0.9.3 accepts but does not enforce (the output can violate them), or
#: rejects.  Found by sending each one to a real server: see scripts/SCHEMA_PROBE.md and
#: tests/e2e/test_format_e2e.py, which re-checks these findings against the real server.
NOT_ENFORCED: dict[str, str] = {}
REJECTED: dict[str, str] = {}


def resolve_format(value: Any) -> Format:
    """Turn what the user gave as ``format`` into ``"json"`` or a checked schema dict.

    Accepts ``"json"``, a dict, JSON text, a path to a ``.json`` file, or a pydantic
    model class (anything with ``model_json_schema()``).
    """
    if isinstance(value, str):
        text = value.strip()
        if text == "json":
            return "json"
        if text.startswith("{"):
            try:
                schema = json.loads(text)
            except ValueError as exc:
                raise SchemaError(f"--format is not valid JSON: {exc}") from None
        elif text.endswith(".json") or Path(text).expanduser().is_file():
            schema = _load_schema_file(text)
        else:
            raise SchemaError(
                f"--format {text!r} is neither 'json', a JSON schema, a .json file, "
                "nor the name of a variable holding a schema."
            )
    elif isinstance(value, Path):
        schema = _load_schema_file(str(value))
    elif isinstance(value, type) and hasattr(value, "model_json_schema"):
        schema = value.model_json_schema()
    elif isinstance(value, Mapping):
        schema = dict(value)
    else:
        raise SchemaError(
            f"format must be 'json', a JSON schema dict or a pydantic model class, not {type(value).__name__}."
        )
    if not isinstance(schema, dict):
        raise SchemaError(f"A JSON schema must be a JSON object, not {type(schema).__name__}.")
    check_schema(schema)
    return schema


def _load_schema_file(path: str) -> Any:
    file = Path(path).expanduser()
    if not file.is_file():
        raise SchemaError(f"Schema file not found: {path!r}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SchemaError(f"Schema file {path!r} is not valid JSON: {exc}") from None


def _where(path: Iterator[Any] | Any) -> str:
    parts = [str(p) for p in path]
    return "/".join(parts) if parts else "(the top level)"


def check_schema(schema: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` naming the offending part if ``schema`` is not valid."""
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except _JsonSchemaError as exc:
        raise SchemaError(f"Invalid JSON schema at {_where(exc.path)}: {exc.message}") from None
    for where, ref in _refs(schema, ()):
        if not ref.startswith("#"):
            raise SchemaError(
                f"Invalid JSON schema at {_where(where)}: $ref {ref!r} points outside the schema; "
                "only local references like '#/$defs/Name' can be used."
            )
        if _pointer(schema, ref[1:]) is None:
            raise SchemaError(f"Invalid JSON schema at {_where(where)}: $ref {ref!r} points to nothing.")


def _refs(node: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield (*where, "$ref"), ref
        for key, child in node.items():
            if key not in ("enum", "const", "default", "examples"):
                yield from _refs(child, (*where, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _refs(child, (*where, i))


def _pointer(schema: Any, pointer: str) -> Any:
    if pointer in ("", "/"):
        return schema
    node = schema
    for raw in pointer.lstrip("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def keyword_warnings(schema: Format) -> list[str]:
    """One line per keyword in ``schema`` that Ollama rejects or does not enforce."""
    if not isinstance(schema, dict):
        return []
    found: dict[str, list[str]] = {}
    for where, keyword in _keywords(schema, ()):
        if keyword in NOT_ENFORCED or keyword in REJECTED:
            found.setdefault(keyword, []).append(_where(where))
    lines = []
    for keyword, places in found.items():
        why = REJECTED.get(keyword) or NOT_ENFORCED[keyword]
        lines.append(f"{keyword!r} (at {', '.join(places[:3])}): {why}")
    return lines


def _keywords(node: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield where, key
            if key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
                if isinstance(child, dict):
                    for name, sub in child.items():
                        yield from _keywords(sub, (*where, key, name))
            elif key not in ("enum", "const", "default", "examples", "required"):
                yield from _keywords(child, (*where, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _keywords(child, (*where, i))


def prompt_with_schema(prompt: str, fmt: Format) -> str:
    """Append the instruction Ollama's documentation advises: say that JSON is wanted.

    The grammar forces JSON syntax but the model still has to know *what* to put in it;
    without the schema in the prompt small models tend to fill it with empty values.
    """
    if fmt == "json":
        return f"{prompt}\n\nRespond in JSON."
    return f"{prompt}\n\nRespond with JSON that matches this JSON schema:\n{json.dumps(fmt)}"


def validate_answer(text: str, fmt: Format) -> tuple[Any, list[str]]:
    """Parse ``text`` as JSON and validate it against ``fmt``.

    Returns ``(data, [])`` when valid, ``(None, errors)`` otherwise; every error is
    listed with its JSON path, not only the first.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, [f"the answer is not valid JSON: {exc}"]
    if not isinstance(fmt, dict):
        return data, []
    validator = validator_for(fmt)(fmt)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        return None, [f"{e.json_path}: {e.message}" for e in errors]
    return data, []


def retry_prompt(prompt: str, answer: str, errors: list[str]) -> str:
    """The prompt for another attempt: the original request plus what was wrong."""
    problems = "\n".join(f"- {e}" for e in errors)
    return (
        f"{prompt}\n\nA previous answer was:\n{answer}\n\nIt was rejected because:\n{problems}\n"
        "Answer again with JSON that fixes these problems."
    )
