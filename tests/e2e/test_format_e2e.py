"""--format against the real Ollama: json, a nested schema, and what the probe found.

The probe (scripts/probe_schema_keywords.py, table in scripts/SCHEMA_PROBE.md) found
which JSON Schema keywords Ollama 0.9.3 enforces, ignores or rejects; the notes that
ollama_magic prints before sending are based on it.  These tests re-check a finding of
each kind on every CI run, so a server that changes behaviour is noticed.
"""

from __future__ import annotations

from typing import Any

import pytest

from ollama_magic import OllamaResponseError, SchemaKeywordWarning, generate
from ollama_magic.engine.structured import keyword_warnings

from .conftest import SHORT

NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 18},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "tags", "address"],
}


def test_format_json_gives_parsed_data(real_host: str) -> None:
    result = generate("Why is the sky blue?", SHORT, format="json", host=real_host, options={"temperature": 0})
    assert result.errors == []
    assert result.data == {}  # the tiny model's smallest JSON
    assert result.done_reason == "stop"


def test_nested_schema_with_arrays_and_required_fields(real_host: str) -> None:
    assert keyword_warnings(NESTED) == []  # everything in it is enforced by Ollama
    result = generate("Invent a person.", SHORT, format=NESTED, host=real_host, options={"temperature": 0})
    assert result.errors == []
    data = result.data
    assert set(data) == {"name", "age", "tags", "address"}
    assert data["age"] >= 18
    assert len(data["tags"]) >= 2
    assert len(data["address"]["zip"]) == 5


def test_in_the_magic_the_valid_answer_is_data(real_ip: Any) -> None:
    real_ip.user_ns["schema"] = NESTED
    assert real_ip.run_cell(f"%%generate -m {SHORT} --format schema -o r\nInvent a person.").success
    result = real_ip.user_ns.pop("r")
    assert result.errors == []
    assert result.data["address"]["city"] == ""


def test_finding_ignored_keyword_is_caught_locally(real_host: str) -> None:
    """multipleOf is accepted by Ollama but not enforced: only the local check catches it."""
    schema = {"type": "object", "properties": {"v": {"type": "integer", "multipleOf": 7}}, "required": ["v"]}
    with pytest.warns(SchemaKeywordWarning, match="'multipleOf' is ignored"):
        result = generate("hi", SHORT, format=schema, host=real_host, options={"temperature": 0})
    assert result.text == '{"v":1}'
    assert result.data is None
    assert result.errors == ["$.v: 1 is not a multiple of 7"]


def test_finding_integer_minimum_is_enforced(real_host: str) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "integer", "minimum": 10}}, "required": ["v"]}
    result = generate("hi", SHORT, format=schema, host=real_host, options={"temperature": 0})
    assert result.errors == []
    assert result.data["v"] >= 10


def test_finding_unanchored_pattern_is_rejected(real_host: str) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": "[a-z]{3}"}}, "required": ["v"]}
    with pytest.warns(SchemaKeywordWarning, match="unless anchored"), pytest.raises(OllamaResponseError) as info:
        generate("hi", SHORT, format=schema, host=real_host)
    # streamed, the rejection arrives as an error line inside a 200 stream
    assert info.value.status_code == -1
    assert str(info.value) == "Ollama reported an error: invalid JSON schema in format"


def test_retries_show_each_attempt_and_keep_the_thread(real_ip: Any, capsys: Any) -> None:
    real_ip.user_ns["schema"] = {
        "type": "object",
        "properties": {"v": {"type": "integer", "multipleOf": 7}},
        "required": ["v"],
    }
    assert real_ip.run_cell(f"%%generate -m {SHORT} --format schema --retries 2 -o r\nhi").success
    result = real_ip.user_ns.pop("r")
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("[attempt ")] == [
        "[attempt 1 of 3]",
        "[attempt 2 of 3]",
        "[attempt 3 of 3]",
    ]
    assert out.count("rejected: the answer does not match the schema") == 3
    assert result.errors == ["$.v: 1 is not a multiple of 7"]  # the deterministic model never gets it right
    conversations = real_ip.magics_manager.registry["GenerateMagics"].conversations
    assert conversations.thread("default").head.turns == 0  # no accepted answer, no new turn


def _probe_module() -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "probe_schema_keywords.py"
    spec = importlib.util.spec_from_file_location("probe_schema_keywords", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notes_match_the_probe_on_this_server(real_host: str) -> None:
    """Every keyword probe, run against the real server, agrees with what we tell users.

    A keyword Ollama rejects or does not enforce must get a note before sending; a keyword
    it enforces must not (no false alarms).  The probe designs each schema so that the
    tiny model's natural output would violate the keyword if it were not enforced.
    """
    probe = _probe_module()
    missed, false_alarms = [], []
    for case in probe.PROBES:
        row = probe.run_probe(real_host, SHORT, case, 48)
        notes = keyword_warnings(row["schema"])
        verdict = row["verdict"]
        if verdict in ("rejected", "accepted but not enforced (output violates)") and not notes:
            missed.append((case[0], verdict, row["schema"]))
        # oneOf's branches are enforced (as anyOf); the note is about exclusivity, which the
        # overlapping-branches probe shows is not enforced.
        if verdict == "enforced" and notes and case[0] != "oneOf":
            false_alarms.append((case[0], notes))
    assert missed == []
    assert false_alarms == []
