"""A threaded fake Ollama for the batch tests: answers each prompt from its text.

It answers "echo: <prompt>" after a random delay, so answers arriving out of order under
concurrency are noticed.  Prompt words script the faults: ``fail`` → HTTP 500, ``hang``
→ a slow endless stream (and the main thread is interrupted when ``interrupt_on_hang``),
``busy`` → HTTP 503 the first time, ``badjson``/``goodjson`` → an answer that fails / passes ``{"n": integer}``.
``/api/chat`` is answered the same way from the last message (the text in ``message``, no
context, as Ollama does); every request body is kept in ``bodies``.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator

from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from .conftest import final


class EchoOllama:
    """A threaded fake: answers "echo: <prompt>" after a random delay; counts requests."""

    def __init__(self, server: HTTPServer, max_delay: float = 0.03) -> None:
        self.server = server
        self.max_delay = max_delay
        self.prompts: list[str] = []
        #: Every /api/generate and /api/chat body, in order of arrival.
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.closed = threading.Event()
        self.hanging = threading.Event()
        self.interrupt_on_hang = False
        #: With interrupt_on_hang: first wait until this many answers were sent in full.
        self.interrupt_after = 0
        self.completed = 0
        self.tags_calls = 0
        self.digest = "sha256:aaa"
        #: When set, every request must carry ``Authorization: Bearer <token>`` (else 401).
        self.token: str | None = None
        self._lock = threading.Lock()
        server.expect_request("/api/generate", method="POST").respond_with_handler(self.generate)
        server.expect_request("/api/chat", method="POST").respond_with_handler(self.generate)
        server.expect_request("/api/tags").respond_with_handler(self.tags)

    def _take_interrupt(self) -> bool:
        """True once per ``interrupt_on_hang = True``: a Ctrl-C is simulated exactly once, so
        a second request in flight cannot deliver another after the test has caught the first
        (a stray KeyboardInterrupt ends the whole pytest run)."""
        with self._lock:
            if not self.interrupt_on_hang:
                return False
            self.interrupt_on_hang = False
            return True

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def _refused(self, request: Request) -> Response | None:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return Response(json.dumps({"error": "unauthorized"}), status=401, mimetype="application/json")
        return None

    def tags(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        with self._lock:
            self.tags_calls += 1
        body = {"models": [{"name": "tiny:latest", "model": "tiny:latest", "digest": self.digest}]}
        return Response(json.dumps(body), mimetype="application/json")

    def generate(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = request.get_json()
        chat = request.path == "/api/chat"
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        with self._lock:
            self.prompts.append(prompt)
            self.bodies.append(body)
        if "busy" in prompt and self.prompts.count(prompt) == 1:  # the first time only
            return Response(json.dumps({"error": "server busy"}), status=503, mimetype="application/json")
        if "fail" in prompt:
            return Response(json.dumps({"error": "the model crashed"}), status=500, mimetype="application/json")
        answer = '{"n": "not a number"}' if "badjson" in prompt else f"echo: {prompt}"
        if "goodjson" in prompt:
            answer = '{"n": 1}'

        def lines() -> Iterator[bytes]:
            counted = False
            with self._lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                if "hang" in prompt:
                    self.hanging.set()
                    if self._take_interrupt():
                        deadline = time.monotonic() + 10
                        while self.completed < self.interrupt_after and time.monotonic() < deadline:
                            time.sleep(0.01)
                        time.sleep(0.2 if self.interrupt_after else 0)  # the client reads them meanwhile
                        _thread.interrupt_main()
                    for _ in range(600):  # 30 s unless the client goes away
                        yield (json.dumps({"model": "tiny", "response": ".", "done": False}) + "\n").encode()
                        time.sleep(0.05)
                    return
                time.sleep(random.uniform(0, self.max_delay))
                model = body.get("model", "tiny")
                if chat:
                    piece = {"model": model, "message": {"role": "assistant", "content": answer}, "done": False}
                    last = {**final(None, model), "message": {"role": "assistant", "content": ""}}
                else:
                    piece, last = {"model": "tiny", "response": answer, "done": False}, final([1, 2, 3])
                yield (json.dumps(piece) + "\n").encode()
                # Counted as finished before the last line goes out: once the client has read it,
                # it may send its next request before this generator is resumed (most_in_flight
                # would then count one request twice).
                with self._lock:
                    self.completed += 1
                    self.in_flight -= 1
                    counted = True
                yield (json.dumps(last) + "\n").encode()
            except GeneratorExit:
                self.closed.set()
                raise
            finally:
                if not counted:
                    with self._lock:
                        self.in_flight -= 1

        return Response(lines(), mimetype="application/x-ndjson")


@contextlib.contextmanager
def serve() -> Iterator[EchoOllama]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield EchoOllama(server)
    finally:
        server.clear()
        if server.is_running():
            server.stop()
