"""The HTTP client: talks to Ollama, knows nothing of IPython.

Transport errors are translated here, at the boundary, into the one-line errors of
:mod:`ollama_magic.errors`; every streamed line is checked for an ``error`` key, because
Ollama can report a failure inside a 200 stream.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

from .errors import (
    ModelNotFoundError,
    OllamaConnectionError,
    OllamaResponseError,
    OllamaTimeoutError,
)
from .host import resolve_host

#: The most bytes taken from the socket in one read.  Reads return as soon as anything
#: has arrived (see :func:`_blocks`), so a large value costs no latency and saves
#: Python-level iterations on fast streams.
READ_SIZE = 64 * 1024

Timeout = float | tuple[float, float] | None


def _how_to_fix_connection(url: str) -> str:
    return (
        f"Could not reach Ollama at {url}: start it with `ollama serve`, or point to it with "
        "the OLLAMA_HOST environment variable or `%config GenerateMagics.host = 'host:port'`."
    )


class OllamaClient:
    """A small client for the endpoints a notebook needs.

    ``host`` is resolved on every request (``None`` means ``OLLAMA_HOST`` or the default),
    so a notebook that changes ``OLLAMA_HOST`` mid-session is obeyed at once.
    """

    def __init__(
        self,
        host: str | None = None,
        timeout: Timeout = None,
        session: requests.Session | None = None,
    ) -> None:
        self.host = host
        self.timeout_seconds = timeout[1] if isinstance(timeout, tuple) else timeout
        # A plain number is the wait for each part of the answer; connecting gets at
        # most 10 s of it, so a wrong host fails quickly even with a long timeout.
        if isinstance(timeout, (int, float)):
            timeout = (min(10.0, float(timeout)), float(timeout))
        self.timeout = timeout
        self.session = session or requests.Session()

    @property
    def base_url(self) -> str:
        """The server's base URL as it would be used now."""
        return resolve_host(self.host)

    # -- plumbing -------------------------------------------------------------------

    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, stream=stream, timeout=self.timeout, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise OllamaTimeoutError(
                f"Ollama at {self.base_url} did not answer within {self.timeout_seconds:g} s: "
                "raise it with --timeout or `%config GenerateMagics.timeout`."
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise OllamaConnectionError(_how_to_fix_connection(self.base_url)) from exc
        if response.status_code >= 400:
            try:
                self._raise_for_status(response, kwargs.get("json"))
            finally:
                response.close()
        return response

    @staticmethod
    def _raise_for_status(response: requests.Response, payload: Any) -> None:
        status = response.status_code
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text.strip() or response.reason or "no message"
        message = str(message).strip()
        model = payload.get("model") if isinstance(payload, dict) else None
        if status == 404 and model and "not found" in message.lower():
            raise ModelNotFoundError(
                f"Model {model!r} is not on the Ollama server at {response.url.split('/api/')[0]}: "
                f"pull it with `ollama pull {model}` (or `%ollama pull {model}`), "
                "or see `%ollama list` for the models you have.",
                status,
            )
        if status == 503:
            message += " (the server is busy: try again in a moment)"
        raise OllamaResponseError(f"Ollama answered HTTP {status}: {message}", status)

    # -- generation -----------------------------------------------------------------

    def generate_stream(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``/api/generate`` and yield each response object as it arrives.

        Works for ``stream: false`` too (one object).  Closing the generator (or an
        exception such as KeyboardInterrupt inside the consumer) closes the connection
        at once, which tells Ollama to stop generating.
        """
        response = self._request("POST", "/api/generate", json=payload, stream=True)
        try:
            yield from iter_ndjson(response, self.base_url)
        finally:
            response.close()

    # -- management -----------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()  # type: ignore[no-any-return]
        except ValueError as exc:
            raise OllamaResponseError(f"Ollama sent something that is not JSON from {path}") from exc

    def version(self) -> str:
        """The server's version string."""
        return str(self._json("GET", "/api/version").get("version", "unknown"))

    def tags(self) -> list[dict[str, Any]]:
        """The models stored on the server (``GET /api/tags``)."""
        return list(self._json("GET", "/api/tags").get("models") or [])

    def ps(self) -> list[dict[str, Any]]:
        """The models loaded in memory now (``GET /api/ps``)."""
        return list(self._json("GET", "/api/ps").get("models") or [])

    def pull(self, model: str) -> Iterator[dict[str, Any]]:
        """Download a model, yielding Ollama's progress objects (``status``, ``completed``, ``total``)."""
        response = self._request("POST", "/api/pull", json={"model": model, "stream": True}, stream=True)
        try:
            yield from iter_ndjson(response, self.base_url)
        finally:
            response.close()

    def show(self, model: str) -> dict[str, Any]:
        """Details of one model (``POST /api/show``)."""
        return self._json("POST", "/api/show", json={"model": model})


def _blocks(response: requests.Response) -> Iterator[bytes]:
    """Yield the body as it arrives: each read returns whatever bytes are available.

    ``read1`` returns as soon as any data is there, with or without chunked transfer
    encoding (a proxy may strip it), so the first token is never held back waiting for
    a full buffer.  Old urllib3 (1.x) lacks ``read1``; there we fall back to ``stream``.
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None or getattr(raw, "chunked", False):
        # Chunked, as Ollama sends it: stream() yields each chunk the moment it has
        # arrived, at a third of read1's cost per chunk (read1 goes through http.client's
        # chunk decoder and urllib3's decoded buffer for every line).
        yield from raw.stream(READ_SIZE, decode_content=True)
        return
    while True:
        block = read1(READ_SIZE)
        if not block:
            return
        yield block


def iter_ndjson(response: requests.Response, base_url: str = "") -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of an NDJSON response, raising on ``error`` lines.

    A line that is not JSON raises :class:`OllamaResponseError`; a connection that breaks
    raises :class:`OllamaConnectionError`.  A stream that simply ends before ``done`` is
    left to the caller to notice.
    """
    pending = b""
    try:
        for block in _blocks(response):
            lines = block.split(b"\n")
            lines[0] = pending + lines[0]
            pending = lines.pop()
            for line in lines:
                if line.strip():
                    yield _decode_line(line)
        if pending.strip():
            yield _decode_line(pending)
    except (
        urllib3.exceptions.HTTPError,
        requests.exceptions.RequestException,
        http.client.HTTPException,
        OSError,
    ) as exc:
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, requests.exceptions.Timeout, TimeoutError)):
            raise OllamaTimeoutError(
                f"Ollama at {base_url} stopped sending for longer than the timeout: "
                "raise it with --timeout or `%config GenerateMagics.timeout`."
            ) from exc
        raise OllamaConnectionError(
            f"The connection to Ollama at {base_url} broke before the answer was complete."
        ) from exc


def _decode_line(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        snippet = line[:80].decode("utf-8", "replace")
        raise OllamaResponseError(f"Ollama sent a line that is not JSON: {snippet!r}") from exc
    if not isinstance(obj, dict):
        raise OllamaResponseError(f"Ollama sent an unexpected line: {obj!r:.80}")
    if "error" in obj:
        raise OllamaResponseError(f"Ollama reported an error: {obj['error']}", -1)
    return obj
