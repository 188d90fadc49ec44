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
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from ollama_magic import GenerationInterrupted, generate
from ollama_magic.engine.generation import _stream_one

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


def test_generations_sharing_a_cancel_share_one_watcher_and_all_stop() -> None:
    """A batch's items (or a comparison's models) share one cancel: one small thread
    watches it for all of them, and setting it ends every one still open."""
    release = threading.Event()
    begun: list[bool] = []

    def respond(request: Any) -> Response:
        def lines() -> Iterator[bytes]:
            yield (json.dumps(chunk("Begun")) + "\n").encode()
            begun.append(True)
            release.wait(SILENCE)

        return Response(lines(), mimetype="application/x-ndjson")

    server = HTTPServer(threaded=True)  # three requests open at once
    server.expect_request("/api/generate", method="POST").respond_with_handler(respond)
    server.start()
    cancel = threading.Event()
    outcomes: list[BaseException] = []

    def one() -> None:
        try:
            generate("Hi", "tiny", host=f"127.0.0.1:{server.port}", timeout=SILENCE * 2, cancel=cancel)
        except BaseException as exc:
            outcomes.append(exc)

    workers = [threading.Thread(target=one, daemon=True) for _ in range(3)]
    earlier = set(threading.enumerate())  # an earlier test's watcher may still be lingering
    try:
        for worker in workers:
            worker.start()
        assert wait_for(lambda: len(begun) == 3)
        watchers = [t for t in threading.enumerate() if t.name == "ollama-magic-cancel" and t not in earlier]
        assert len(watchers) == 1
        cancel.set()
        for worker in workers:
            worker.join(SILENCE / 3)
        assert len(outcomes) == 3 and all(isinstance(o, GenerationInterrupted) for o in outcomes)
        assert all(o.partial.text == "Begun" for o in outcomes)  # type: ignore[attr-defined]
        # The watcher ends once nothing is left to watch.
        assert wait_for(lambda: not watchers[0].is_alive(), timeout=10)
    finally:
        release.set()
        server.clear()
        server.stop()


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_cancel_ends_a_busy_servers_backoff_at_once(fake: FakeOllama) -> None:
    """A stop while waiting out a 503 (Retry-After: 25 s here) does not wait it out."""
    fake.answers.append(
        lambda body: Response(
            json.dumps({"error": "server busy, please try again.  maximum pending requests exceeded"}),
            status=503,
            mimetype="application/json",
            headers={"Retry-After": "25"},
        )
    )
    fake.reply()  # what a retry would get: it must never be asked for
    cancel = threading.Event()
    retries: list[Any] = []
    fired = stop_after(cancel, 0.3)
    with pytest.raises(GenerationInterrupted) as info:
        generate("Hi", "tiny", host=fake.host, cancel=cancel, on_retry=retries.append)
    assert time.monotonic() - fired[0] < 10  # not the 25 s the server asked for
    assert len(retries) == 1 and len(fake.requests) == 1
    assert info.value.partial.error == "Interrupted before the answer began; the conversation is unchanged."
