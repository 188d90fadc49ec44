"""--format: every input form, schemas checked before sending, answers validated on arrival."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollama_magic import SchemaError, generate
from ollama_magic.engine.structured import check_schema, resolve_format, validate_answer

from .conftest import FakeOllama, chunk, final, run

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "pets": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
}


def answer(fake: FakeOllama, text: str, context: list[int] | None = None) -> None:
    half = len(text) // 2
    fake.stream(chunk(text[:half]), chunk(text[half:]), final(context or [1]))


# -- input forms -------------------------------------------------------------------


def test_format_json(nb: Any, fake: FakeOllama) -> None:
    answer(fake, '{"sky": "blue"}')
    run(nb, "%%generate -m tiny --format json -o r\nColour of the sky?")
    assert fake.last["format"] == "json"
    assert fake.last["prompt"] == "Colour of the sky?"  # no schema to state for plain json
    assert nb.user_ns["r"].data == {"sky": "blue"}


def test_inline_schema(ip: Any, fake: FakeOllama) -> None:
    answer(fake, '{"name": "Ada", "age": 36}')
    run(ip, f"%%generate -m tiny --format '{json.dumps(PERSON)}' -o r\nWho?")
    assert fake.last["format"] == PERSON
    assert ip.user_ns["r"].data == {"name": "Ada", "age": 36}
    assert ip.user_ns["r"].errors == []


def test_schema_file(ip: Any, fake: FakeOllama, tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    answer(fake, '{"name": "Ada", "age": 36}')
    run(ip, f"%%generate -m tiny --format {path}\nWho?")
    assert fake.last["format"] == PERSON


def test_schema_variable(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns["schema"] = PERSON
    answer(fake, '{"name": "Ada", "age": 36}')
    run(ip, "%%generate -m tiny --format schema\nWho?")
    assert fake.last["format"] == PERSON


def test_pydantic_model_variable(ip: Any, fake: FakeOllama) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Person(pydantic.BaseModel):
        name: str
        age: int

    ip.user_ns["schema"] = Person
    answer(fake, '{"name": "Ada", "age": 36}')
    run(ip, "%%generate -m tiny --format schema -o r\nWho?")
    assert fake.last["format"]["required"] == ["name", "age"]
    assert ip.user_ns["r"].data == {"name": "Ada", "age": 36}


def test_schema_is_stated_in_the_prompt_by_default(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns["schema"] = PERSON
    answer(fake, '{"name": "Ada", "age": 36}')
    run(ip, "%%generate -m tiny --format schema\nWho?")
    assert fake.last["prompt"].startswith("Who?\n\nRespond with JSON that matches this JSON schema:\n")
    assert json.loads(fake.last["prompt"].split("\n")[-1]) == PERSON
    answer(fake, '{"name": "Ada", "age": 36}')
    run(ip, "%%generate -m tiny --format schema --no-schema-in-prompt\nWho?")
    assert fake.last["prompt"] == "Who?"


def test_python_api_accepts_the_same_forms(fake: FakeOllama, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(PERSON))
    for form in (PERSON, json.dumps(PERSON), str(path), path):
        answer(fake, '{"name": "Ada", "age": 1}')
        result = generate("Who?", "tiny", format=form, host=fake.host)
        assert fake.last["format"] == PERSON
        assert result.data == {"name": "Ada", "age": 1}


# -- invalid schemas: a one-line UsageError, nothing sent ---------------------------

INVALID = [
    ('{"type": "strin"}', "Invalid JSON schema at type"),
    ('{"type": "object", "properties": {"a": {"type": 5}}}', "Invalid JSON schema at properties/a/type"),
    ('{"type": "object", "required": "name"}', "Invalid JSON schema at required: 'name' is not of type 'array'"),
    ('{"type": "object", "required": ["a", "a"]}', "Invalid JSON schema at required"),
    ('{"properties": {"a": {"$ref": "#/$defs/Missing"}}}', "$ref '#/$defs/Missing' points to nothing"),
    ('{"$ref": "https://example.com/s.json"}', "points outside the schema"),
    ('{"minimum": "five"}', "Invalid JSON schema at minimum"),
    ("'{not json'", "--format is not valid JSON"),
    ('"[1, 2]"', "neither 'json', a JSON schema"),
    ("/no/such/schema.json", "Schema file not found: '/no/such/schema.json'"),
    ("nosuchvariable", "neither 'json', a JSON schema, a .json file, nor the name of a variable"),
]


@pytest.mark.parametrize(("fmt", "message"), INVALID)
def test_invalid_schema_is_a_usage_error_and_sends_nothing(
    ip: Any, fake: FakeOllama, capsys: Any, fmt: str, message: str
) -> None:
    arg = fmt if fmt.startswith(("'", "/", "n", '"')) else f"'{fmt}'"
    result = run(ip, f"%%generate -m tiny --format {arg}\nWho?")
    assert not result.success
    seen = "".join(capsys.readouterr())
    assert seen.startswith("UsageError: ")
    assert message in seen
    assert len(seen.strip().splitlines()) == 1
    assert fake.requests == []


def test_schema_variable_of_the_wrong_type(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    ip.user_ns["schema"] = 42
    assert not run(ip, "%%generate -m tiny --format schema\nWho?").success
    assert "format must be 'json', a JSON schema dict or a pydantic model class, not int" in "".join(
        capsys.readouterr()
    )
    assert fake.requests == []


def test_check_schema_accepts_local_refs() -> None:
    check_schema({"$defs": {"P": {"type": "string"}}, "properties": {"p": {"$ref": "#/$defs/P"}}})
    with pytest.raises(SchemaError):
        resolve_format({"type": "nope"})


# -- answers --------------------------------------------------------------------------


def test_valid_answer_is_shown_once_as_pretty_json_in_the_models_key_order(nb: Any, fake: FakeOllama) -> None:
    nb.user_ns["schema"] = PERSON
    answer(fake, '{"pets":["cat"],"name":"Ada","age":36}')  # not the schema's order, nor sorted
    run(nb, "%%generate -m tiny --format schema -o r\nWho?")
    displays = {m["transient"].get("display_id") for m in nb.publisher.messages}
    assert len(displays) == 1  # one output: no second copy of the data (a JSON tree) under the footer
    assert not any("application/json" in m["data"] for m in nb.publisher.messages)
    shown = nb.publisher.final
    pretty = '{\n  "pets": [\n    "cat"\n  ],\n  "name": "Ada",\n  "age": 36\n}'
    assert shown["text/plain"].startswith(pretty + "\n— tiny · ")  # the data once, then the footer
    html = shown["text/html"]
    assert html.count("&quot;name&quot;: &quot;Ada&quot;") == 1
    assert html.index("&quot;pets&quot;") < html.index("&quot;name&quot;") < html.index("ollama-magic-footer")
    assert list(nb.user_ns["r"].data) == ["pets", "name", "age"]


def test_invalid_answer_keeps_raw_text_and_lists_every_error(nb: Any, fake: FakeOllama) -> None:
    nb.user_ns["schema"] = PERSON
    answer(fake, '{"name": 5, "age": -1, "pets": [1]}', context=[42])
    run(nb, "%%generate -m tiny --format schema -o r\nWho?")
    r = nb.user_ns["r"]
    assert r.data is None
    assert r.errors == [
        "$.age: -1 is less than the minimum of 0",
        "$.name: 5 is not of type 'string'",
        "$.pets[0]: 1 is not of type 'string'",
    ]
    shown = nb.publisher.final
    assert '{"name": 5, "age": -1, "pets": [1]}' in shown["text/plain"]
    assert "Schema check failed" in shown["text/plain"]
    assert "application/json" not in shown
    for error in r.errors:
        assert error in shown["text/plain"]
    answer(fake, "{}")
    run(nb, "%%generate -m tiny --format json\nAgain")
    assert "context" not in fake.last  # a rejected answer does not continue the thread


def test_answer_that_is_not_json(ip: Any, fake: FakeOllama) -> None:
    answer(fake, '{"name": "Ada", ')
    run(ip, "%%generate -m tiny --format json -o r\nWho?")
    assert ip.user_ns["r"].errors[0].startswith("the answer is not valid JSON")


def test_retries_until_valid_and_only_the_accepted_answer_continues(nb: Any, fake: FakeOllama) -> None:
    nb.user_ns["schema"] = PERSON
    answer(fake, '{"name": "Ada"}', context=[1])
    answer(fake, '{"name": "Ada", "age": "old"}', context=[2])
    answer(fake, '{"name": "Ada", "age": 36}', context=[3])
    run(nb, "%%generate -m tiny --format schema --retries 3 -o r\nWho?")
    assert len(fake.requests) == 3
    retry = fake.requests[1]["prompt"]
    assert 'A previous answer was:\n{"name": "Ada"}' in retry
    assert "$: 'age' is a required property" in retry
    assert "context" not in fake.requests[1]  # each attempt starts from the same conversation
    r = nb.user_ns["r"]
    assert r.data == {"name": "Ada", "age": 36}
    displays = {m["transient"]["display_id"] for m in nb.publisher.messages if "display_id" in m["transient"]}
    assert len(displays) == 3  # each attempt is visible
    assert nb.publisher.messages[-1]["data"]["text/plain"].startswith('{\n  "name": "Ada",\n  "age": 36\n}')
    texts = [m["data"]["text/plain"] for m in nb.publisher.messages if m["update"]]
    assert any("attempt 1 of 4 · rejected" in t for t in texts)
    answer(fake, '{"name": "B", "age": 1}')
    run(nb, "%%generate -m tiny --format schema\nNext")
    assert fake.last["context"] == [3]


def test_retries_exhausted(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns["schema"] = PERSON
    answer(fake, "{}")
    answer(fake, "{}")
    run(ip, "%%generate -m tiny --format schema --retries 1 -o r\nWho?")
    assert len(fake.requests) == 2
    assert ip.user_ns["r"].errors


def test_validate_answer_unit() -> None:
    assert validate_answer("[1, 2]", "json") == ([1, 2], [])
    data, errors = validate_answer('{"a": 1}', {"type": "object", "additionalProperties": False})
    assert data is None
    assert errors == ["$: Additional properties are not allowed ('a' was unexpected)"]


# -- what Ollama does not enforce ---------------------------------------------------


def test_unenforced_keywords_are_noted_before_sending(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    ip.user_ns["schema"] = {
        "type": "object",
        "properties": {
            "n": {"type": "number", "minimum": 1, "multipleOf": 2},
            "mail": {"type": "string", "format": "email"},
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "[0-9]+"},
        },
        "required": ["n"],
    }
    answer(fake, '{"n": 2}')
    run(ip, "%%generate -m tiny --format schema\nGo")
    err = capsys.readouterr().err
    assert "at properties/n: 'multipleOf' is ignored" in err
    assert "at properties/n: 'minimum' only enforced for type 'integer'" in err
    assert "at properties/mail: format 'email' is ignored" in err
    assert "properties/when" not in err  # date is enforced
    assert "pattern '[0-9]+' is rejected (HTTP 500) unless anchored" in err
    assert all(line.startswith("Note: Ollama will not enforce") for line in err.strip().splitlines())
    assert len(fake.requests) == 1  # a note, not an error: the request is still sent


def test_pydantic_any_field_is_noted(fake: FakeOllama) -> None:
    from ollama_magic.engine.structured import keyword_warnings

    notes = keyword_warnings({"type": "object", "properties": {"x": {"title": "X"}}})
    assert notes == ["at properties/x: a schema with only ['title'] is rejected (HTTP 500): give it a 'type'"]
    assert keyword_warnings({"type": "integer", "minimum": 3}) == []


def test_python_api_warns_with_a_warning_category(fake: FakeOllama) -> None:
    from ollama_magic import SchemaKeywordWarning

    answer(fake, "[1, 1]")
    with pytest.warns(SchemaKeywordWarning, match="'uniqueItems' is ignored"):
        generate(
            "Go", "tiny", format={"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, host=fake.host
        )


def test_patterns_that_crash_ollama_are_refused(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    ip.user_ns["schema"] = {"type": "string", "pattern": "^(?:ab)+$"}
    assert not run(ip, "%%generate -m tiny --format schema\nGo").success
    seen = "".join(capsys.readouterr())
    assert "UsageError: Refusing to send the schema: the pattern at the top level uses '(?'" in seen
    assert fake.requests == []
