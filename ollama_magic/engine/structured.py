"""Structured output: resolving ``format``, checking schemas before sending, and
validating answers when they arrive.

Ollama constrains output with a grammar built from the schema, but supports only part
of JSON Schema, reports a bad schema only as a terse server error, and can return
output that does not match.  So the schema is checked here with jsonschema first, the
keywords Ollama does not enforce are named, and every answer is validated locally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import SchemaError

Format = str | dict[str, Any]

#: What Ollama 0.9.3 does with JSON Schema keywords, found by sending each one to a real
#: server (scripts/probe_schema_keywords.py; the table is scripts/SCHEMA_PROBE.md, and
#: tests/e2e/test_format_e2e.py re-checks the findings on every CI run).
IGNORED_KEYWORDS: dict[str, str] = {
    "multipleOf": "is ignored",
    "uniqueItems": "is ignored",
    "if": "(if/then/else) is ignored",
    "dependentRequired": "is ignored",
    "dependentSchemas": "is ignored",
    "minProperties": "is ignored",
    "maxProperties": "is ignored",
    "contains": "is ignored",
    "minContains": "is ignored",
    "maxContains": "is ignored",
    "oneOf": "is treated as anyOf (exclusivity is not enforced)",
}
#: ``format`` values the grammar enforces; the others (email, uri, ipv4, ...) are ignored.
ENFORCED_FORMATS = frozenset({"date-time", "date", "time", "uuid"})
#: Keywords from which Ollama's converter builds a grammar; a non-empty (sub)schema with
#: none of them (``{"title": "x"}``, which pydantic writes for an ``Any`` field) is rejected.
UNDERSTOOD = frozenset(
    {"type", "properties", "items", "prefixItems", "enum", "const", "$ref", "anyOf", "oneOf", "allOf"}
)
_NUMERIC_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
#: Regex constructs that make the server process crash (SIGSEGV) while building the grammar.
_CRASHING_PATTERN = re.compile(r"\(\?[:=!<]")
_REJECTED_PATTERN = re.compile(r"\\[dwsDWS1-9]")


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
    refuse_crashing_patterns(schema)
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
    return "/".join(parts) if parts else "the top level"


def check_schema(schema: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` naming the offending part if ``schema`` is not valid."""
    # Imported here, not at module level: with Jupyter's extras installed, importing
    # jsonschema pulls in rfc3987_syntax and costs over a second, which every
    # `%load_ext` would pay even when no --format is ever used.
    from jsonschema.exceptions import SchemaError as _JsonSchemaError
    from jsonschema.validators import validator_for

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


def _subschemas(node: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every (sub)schema in ``node`` with its path, skipping literal values (enum, const...)."""
    if not isinstance(node, dict):
        return
    yield where, node
    for key, child in node.items():
        if key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
            if isinstance(child, dict):
                for name, sub in child.items():
                    yield from _subschemas(sub, (*where, key, name))
        elif key in ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"):
            yield from _subschemas(child, (*where, key))
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(child, list):
            for i, sub in enumerate(child):
                yield from _subschemas(sub, (*where, key, i))


def _types(node: dict[str, Any]) -> set[str]:
    value = node.get("type")
    return {value} if isinstance(value, str) else set(value) if isinstance(value, list) else set()


def _node_warnings(node: dict[str, Any]) -> Iterator[str]:
    """What Ollama will not enforce, or will reject, in this one (sub)schema."""
    for keyword, why in IGNORED_KEYWORDS.items():
        if keyword in node:
            yield f"{keyword!r} {why}"
    if node and not UNDERSTOOD & node.keys():
        yield f"a schema with only {sorted(node)} is rejected (HTTP 500): give it a 'type'"
    if "not" in node and UNDERSTOOD & node.keys():
        yield "'not' is ignored"
    bounds = [k for k in _NUMERIC_BOUNDS if k in node]
    if bounds and "integer" not in _types(node):
        yield f"{', '.join(map(repr, bounds))} only enforced for type 'integer'"
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt not in ENFORCED_FORMATS:
        yield f"format {fmt!r} is ignored (only {', '.join(sorted(ENFORCED_FORMATS))} are enforced)"
    if "minItems" in node and not ({"items", "prefixItems"} & node.keys()):
        yield "'minItems' is ignored without 'items'"
    properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    missing = [k for k in node.get("required", []) if isinstance(k, str) and k not in properties]
    if missing:
        yield f"required keys not listed in 'properties' ({', '.join(missing)}) are ignored"
    all_of = node.get("allOf")
    if isinstance(all_of, list) and not all(isinstance(s, dict) and "object" in _types(s) for s in all_of):
        yield "'allOf' is only enforced for object schemas"
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        if not (pattern.startswith("^") and pattern.endswith("$")):
            yield f"pattern {pattern!r} is rejected (HTTP 500) unless anchored with ^...$"
        if _REJECTED_PATTERN.search(pattern):
            yield f"pattern {pattern!r} is rejected (HTTP 500): write classes like [0-9] instead of \\d"
        if "[^" in pattern:
            yield f"pattern {pattern!r}: a negated class can let Ollama emit invalid JSON"
        if re.search(r"[+*?}]\?", pattern):
            yield f"pattern {pattern!r}: lazy quantifiers are ignored"


def keyword_warnings(schema: Format) -> list[str]:
    """One line per part of ``schema`` that Ollama (0.9.3, probed) rejects or does not enforce.

    The answer is still validated locally, so for these the local check is the only guard.
    """
    if not isinstance(schema, dict):
        return []
    lines = []
    for where, node in _subschemas(schema, ()):
        lines.extend(f"at {_where(where)}: {warning}" for warning in _node_warnings(node))
    return lines


def refuse_crashing_patterns(schema: Format) -> None:
    """Raise :class:`SchemaError` for ``pattern`` constructs that crash the Ollama server.

    A lookahead ``(?=`` or a non-capturing group ``(?:`` in a pattern kills Ollama 0.9.3's
    process (SIGSEGV while building the grammar), taking every other user's work with it.
    """
    if not isinstance(schema, dict):
        return
    for where, node in _subschemas(schema, ()):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and _CRASHING_PATTERN.search(pattern):
            raise SchemaError(
                f"Refusing to send the schema: the pattern at {_where(where)} uses '(?', which crashes "
                "the Ollama server (0.9.3); use plain groups '(a|b)' instead."
            )


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
    from jsonschema.validators import validator_for

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
