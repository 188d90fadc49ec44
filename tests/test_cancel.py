"""``generate(cancel=...)``: another thread ends a generation at once, whatever the server does.

The fake server here goes silent (before its headers, as Ollama does while a model loads,
or in the middle of an answer); a stop must not wait for its next bytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.wrappers import Response

from ollama_magic import GenerationInterrupted, generate
from ollama_magic.generation import _stream_one

from .conftest import FakeOllama, chunk, final

SILENCE = 30.0  # the server's silence; a stop that waited for it would take this long


@pytest.fixture
def silent(fake: FakeOllama) -> Iterator[tuple[FakeOllama, threading.Event, list[bool]]]:
    """Queue answers that go silent until the test ends; ``closed`` records that the server saw the client go."""
    release = threading.Event()
    closed: list[bool] = []
    yield fake, release, closed
    release.set()


def queue_silent(fake: FakeOllama, release: threading.Event, closed: list[bool], *first: dict[str, Any]) -> None:
    def respond(body: dict[str, Any]) -> Response:
        def lines() -> Iterator[bytes]:
            try:
                for obj in first:
                    yield (json.dumps(obj) + "\n").encode()
                release.wait(SILENCE)
                yield (json.dumps(final([1])) + "\n").encode()
            except GeneratorExit:
                closed.append(True)
                raise

        return Response(lines(), mimetype="application/x-ndjson")

    fake.answers.append(respond)


def stop_after(cancel: threading.Event, seconds: float) -> list[float]:
    when: list[float] = []

    def fire() -> None:
        time.sleep(seconds)
        when.append(time.monotonic())
        cancel.set()

    threading.Thread(target=fire, daemon=True).start()
    return when


def test_cancel_ends_a_request_the_server_has_not_answered(silent: Any) -> None:
    fake, release, closed = silent
    queue_silent(fake, release, closed)  # no headers, no bytes: a model that is loading
    cancel = threading.Event()
    fired = stop_after(cancel, 0.3)
    with pytest.raises(GenerationInterrupted) as info:
        generate("Hi", "tiny", host=fake.host, timeout=SILENCE * 2, cancel=cancel)
    waited = time.monotonic() - fired[0]
    assert waited < SILENCE / 3  # it did not wait for the server (the benchmark prints the figure)
    partial = info.value.partial
    assert partial.text == "" and partial.complete is False
    assert partial.error == "Interrupted before the answer began; the conversation is unchanged."


def test_cancel_ends_a_stream_that_went_silent_and_keeps_the_text(silent: Any) -> None:
    fake, release, closed = silent
    queue_silent(fake, release, closed, chunk("Half"), chunk(" an answer"))
    cancel = threading.Event()
    seen: list[str] = []

    def on_chunk(piece: str, thought: str) -> None:
        seen.append(piece)
        if len(seen) == 2:
            stop_after(cancel, 0.2)

    started = time.monotonic()
    with pytest.raises(GenerationInterrupted) as info:
        generate("Hi", "tiny", host=fake.host, timeout=SILENCE * 2, cancel=cancel, on_chunk=on_chunk)
    assert time.monotonic() - started < SILENCE / 3
    assert info.value.partial.text == "Half an answer"


def test_a_set_cancel_sends_nothing(fake: FakeOllama) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationInterrupted):
        generate("Hi", "tiny", host=fake.host, cancel=cancel)
    assert fake.requests == []


def test_an_unset_cancel_changes_nothing(fake: FakeOllama) -> None:
    fake.reply("Hey now!", context=[4])
    result = generate("Hi", "tiny", host=fake.host, cancel=threading.Event())
    assert result.text == "Hey now!" and result.context == [4] and result.complete
    assert not [t for t in threading.enumerate() if t.name == "ollama-magic-cancel" and t.is_alive()] or _settles()


def _settles() -> bool:
    """The watcher thread ends within a moment of the generation."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name == "ollama-magic-cancel" and t.is_alive()]:
            return True
        time.sleep(0.02)
    return False


def test_a_failure_is_still_a_failure_with_cancel(fake: FakeOllama) -> None:
    from ollama_magic import OllamaResponseError

    fake.stream(chunk("Half"), {"error": "model runner crashed"})
    with pytest.raises(OllamaResponseError) as info:
        generate("Hi", "tiny", host=fake.host, cancel=threading.Event())
    assert info.value.partial.text == "Half"


assert _stream_one  # the engine's one streaming function is what takes cancel
