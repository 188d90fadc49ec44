"""Images go only to a model that can see them: Ollama drops them silently otherwise, and the
model answers as if it had seen a picture (smollm2 described "the iconic Star Wars movie
trailer" for a gradient)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from werkzeug import Response

import ollama_magic
from ollama_magic import InvalidRequestError

from .conftest import FakeOllama, run

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
    b"\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"
)


def shows(fake: FakeOllama, capabilities: list[str] | None) -> list[dict[str, Any]]:
    """Make the fake answer /api/show with these capabilities (None: an older server's answer
    without the field); returns the list of /api/show bodies received."""
    asked: list[dict[str, Any]] = []

    def handler(request: Any) -> Response:
        asked.append(request.get_json())
        body: dict[str, Any] = {"details": {"family": "llama"}}
        if capabilities is not None:
            body["capabilities"] = capabilities
        return Response(json.dumps(body), mimetype="application/json")

    fake.server.expect_request("/api/show", method="POST").respond_with_handler(handler)
    return asked


def test_images_to_a_model_without_vision_are_refused_in_one_line_and_nothing_is_generated(
    ip: Any, fake: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = shows(fake, ["completion"])
    ip.user_ns["img"] = PNG
    result = run(ip, "%%generate -m smollm2 --images img\nWhat is in this picture?")
    assert not result.success
    err = capsys.readouterr().err
    assert (
        "smollm2 cannot see images (the server lists its capabilities as: completion), so it would answer "
        "without them; use a model with vision" in err
    )
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert fake.requests == []  # no generation was asked for
    assert asked == [{"model": "smollm2"}]


def test_images_go_to_a_model_with_vision_and_its_answer_is_asked_once(fake: FakeOllama) -> None:
    asked = shows(fake, ["completion", "vision"])
    fake.reply("A red square.")
    fake.reply("Still red.")
    first = ollama_magic.generate("What is it?", "gemma3", images=[PNG], host=fake.host)
    second = ollama_magic.generate("And now?", "gemma3", images=[PNG], host=fake.host)
    assert (first.text, second.text) == ("A red square.", "Still red.")
    assert len(fake.requests[0]["images"]) == 1
    assert len(asked) == 1  # remembered per server and model


def test_a_server_that_does_not_say_is_trusted(fake: FakeOllama) -> None:
    shows(fake, None)  # an Ollama older than 0.6 lists no capabilities
    fake.reply("Something.")
    assert ollama_magic.generate("What is it?", "llava", images=[PNG], host=fake.host).text == "Something."
    assert fake.last["images"]


def test_a_server_that_cannot_be_asked_is_trusted_and_answers_for_itself(fake: FakeOllama) -> None:
    fake.server.expect_request("/api/show", method="POST").respond_with_data("not found", status=404)
    fake.reply("Something.")
    assert ollama_magic.generate("What is it?", "llava", images=[PNG], host=fake.host).text == "Something."


def test_no_images_no_question(fake: FakeOllama) -> None:
    asked = shows(fake, ["completion"])
    fake.reply("Hello.")
    ollama_magic.generate("Hi", "smollm2", host=fake.host)
    assert asked == []


def test_the_refusal_is_an_invalid_request_from_python(fake: FakeOllama) -> None:
    shows(fake, ["completion", "tools"])
    with pytest.raises(InvalidRequestError, match=r"capabilities as: completion, tools\)"):
        ollama_magic.generate("What is it?", "smollm2", images=[PNG], host=fake.host)
    assert fake.requests == []
