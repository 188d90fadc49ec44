"""The HTTP client: talks to Ollama, knows nothing of IPython.

Transport errors are translated here, at the boundary, into the one-line errors of
:mod:`ollama_magic.engine.errors`; every streamed line is checked for an ``error`` key, because
Ollama can report a failure inside a 200 stream.
"""

from __future__ import annotations

import contextlib
import copy
import html
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import auth, busy
from .busy import BusyRetry, RetryCallback
from .errors import (
    ModelNotFoundError,
    OllamaBusyError,
    OllamaConnectionError,
    OllamaMagicError,
    OllamaResponseError,
    OllamaTimeoutError,
)
from .host import redact, resolve

#: The longest response line taken (a line is one JSON object, normally a few hundred
#: bytes; a non-streamed answer is one line).  A server that never ends its line would
#: otherwise grow the kernel's memory without bound; past this the answer stops with an
#: error and the text so far is kept.
MAX_LINE_BYTES = 16 * 1024 * 1024

#: The most bytes taken from the socket in one read.  Reads return as soon as anything
#: has arrived (see :func:`_blocks`), so a large value costs no latency and saves
#: Python-level iterations on fast streams.
READ_SIZE = 64 * 1024

Timeout = float | tuple[float, float] | None


def _how_to_fix_connection(url: str, host_option: str | None) -> str:
    """The connection error, naming the setting the host came from, so it is the one fixed."""
    if host_option:
        return f"Could not reach Ollama at {url} (from {host_option}): check {host_option}, or start Ollama there."
    if os.environ.get("OLLAMA_HOST", "").strip():
        return (
            f"Could not reach Ollama at {url} (from the OLLAMA_HOST environment variable): "
            "check OLLAMA_HOST, or start Ollama there with 'ollama serve'."
        )
    return (
        f"Could not reach Ollama at {url}: start it with 'ollama serve', or point to your server with "
        "the OLLAMA_HOST environment variable, --host, or %config GenerateMagics.host = 'host:port'."
    )


#: The most bytes of an error body that are read: enough for any JSON error or a page's
#: <title>, never a whole download.
ERROR_BODY_LIMIT = 64 * 1024
#: The most characters of a server's message quoted in an error line.
MESSAGE_LIMIT = 200


def _error_body(response: requests.Response) -> str:
    """At most :data:`ERROR_BODY_LIMIT` bytes of an error response's body, as text."""
    try:
        if response.raw is not None and not response._content_consumed:  # type: ignore[attr-defined]
            data = response.raw.read(ERROR_BODY_LIMIT, decode_content=True) or b""
        else:
            data = (response.content or b"")[:ERROR_BODY_LIMIT]
    except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError):
        data = b""
    return data.decode(response.encoding or "utf-8", "replace")


def _error_message(response: requests.Response) -> str:
    """The server's own words from an error body, whatever its shape: a JSON ``error`` (or
    ``message``, ``detail``) string, else the JSON or text itself, else the HTTP reason."""
    text = _error_body(response)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value
            if value:
                return str(value).strip()
    return text.strip() or response.reason or "no message"


_CREDENTIALS_HINT = (
    "it needs credentials: see %config GenerateMagics.headers, user:password@ in the host URL, "
    "or OLLAMA_API_KEY with OLLAMA_API_KEY_HOSTS"
)


def _is_html(response: requests.Response) -> bool:
    kind = response.headers.get("Content-Type", "").lower()
    return "html" in kind


def _page_title(text: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title", text, re.IGNORECASE | re.DOTALL)
    return _short(html.unescape(match.group(1)), 80) if match else ""


def _tls_reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("certificate verify failed", "self-signed certificate", "hostname mismatch", "wrong version number"):
        if known in text:
            match = re.search(r"certificate verify failed: ([^(')\]]+)", text)
            return _short(match.group(1) if match else known, 80)
    return "TLS error"


def _short(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of printable text, at most ``limit`` characters (server text is untrusted:
    no control characters or terminal escapes pass)."""
    message = "".join(c if c.isprintable() else " " for c in message)
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _busy_message(url: str, status: int, reason: str, retried: int, waited: float) -> str:
    what = f"HTTP {status}: {reason}"
    if not retried:
        return (
            f"Ollama at {url} is busy ({what}): try again in a moment, or let it retry with "
            "--busy-retries N or %config GenerateMagics.busy_retries."
        )
    return (
        f"Ollama at {url} was still busy after {retried} {'retry' if retried == 1 else 'retries'} over "
        f"{waited:.0f} s ({what}): try again later, "
        "or allow more with --busy-retries N or %config GenerateMagics.busy_retries."
    )


class _Session(requests.Session):
    """A session that never carries our credentials to another server on a redirect.

    requests drops ``Authorization`` when a redirect leaves the host, but not other
    headers; a configured ``X-Api-Key`` (or any header) must not follow either.
    """

    private_headers: frozenset[str] = frozenset()

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in self.private_headers:
                prepared_request.headers.pop(name, None)


#: Hosts already warned about (``verify=False``), so the warning shows once per session.
_warned_insecure: set[str] = set()


class OllamaClient:
    """A small client for the endpoints a notebook needs.

    ``host`` is resolved on every request (``None`` means ``OLLAMA_HOST`` or the default),
    so a notebook that changes ``OLLAMA_HOST`` mid-session is obeyed at once.

    A busy server (HTTP 503 or 429, which come before any answer text) is asked again up
    to ``busy_retries`` times (default :data:`ollama_magic.busy.DEFAULT_RETRIES`, about a
    minute in all), with jittered exponential backoff or the server's ``Retry-After``;
    ``on_retry`` hears of each wait before it starts (to show it).  This is the only place
    that retries: generate(), the magics and the panel all come through here.

    Credentials: ``headers`` go with every request to this client's server; credentials in
    the host URL become HTTP basic auth; ``OLLAMA_API_KEY`` is sent as a bearer token to
    ``https://ollama.com`` and to the hosts named in ``api_key_hosts`` or
    ``OLLAMA_API_KEY_HOSTS`` only (see :func:`ollama_magic.engine.auth.api_key_for`).  ``verify``
    is requests' TLS setting: True (default; ``REQUESTS_CA_BUNDLE`` is honoured), a CA
    bundle path, or False (warned about once per host).  None of these is ever shown.
    """

    def __init__(
        self,
        host: str | None = None,
        timeout: Timeout = None,
        session: requests.Session | None = None,
        *,
        busy_retries: int | None = None,
        on_retry: RetryCallback | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str | None = None,
        api_key_hosts: Iterable[str] | None = None,
        host_option: str | None = None,
    ) -> None:
        self.host = host
        if busy_retries is not None and busy_retries < 0:
            raise ValueError("busy_retries must be 0 or more")
        self.busy_retries = busy.DEFAULT_RETRIES if busy_retries is None else int(busy_retries)
        self.on_retry = on_retry
        #: How many times a busy server was asked again, over this client's life.
        self.retried = 0
        self.timeout_seconds = timeout[1] if isinstance(timeout, tuple) else timeout
        # A plain number is the wait for each part of the answer; connecting gets at
        # most 10 s of it, so a wrong host fails quickly even with a long timeout.
        if isinstance(timeout, (int, float)):
            timeout = (min(10.0, float(timeout)), float(timeout))
        self.timeout = timeout
        self.session = session or _session()
        self.headers = auth.check_headers(headers)
        self.verify = auth.check_verify(verify)
        self.api_key_hosts = list(api_key_hosts or [])
        #: How the person gave the host (e.g. "--host"), named in the "could not reach" hint.
        self.host_option = host_option

    def __repr__(self) -> str:
        # Never the headers: they hold tokens.
        return f"OllamaClient({self.base_url!r})"

    @property
    def base_url(self) -> str:
        """The server's base URL as it would be used now, as it may be shown (no password)."""
        return resolve(self.host).shown

    # -- plumbing -------------------------------------------------------------------

    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        """Send one request, asking again while the server says it is busy (503/429).

        A busy answer arrives before any answer text, so retrying never repeats text that
        was shown; a failure inside a stream that has begun is never retried.
        """
        retried = 0
        waited = 0.0
        while True:
            response = self._send(method, path, stream=stream, **kwargs)
            if response.status_code not in busy.BUSY_STATUSES:
                break
            if _is_html(response):  # a proxy's page (nginx's limit_req answers 503): its title, never the page
                reason = _page_title(_error_body(response)) or response.reason or "a web page"
            else:
                reason = _short(_error_message(response))
            retry_after = busy.parse_retry_after(response.headers.get("Retry-After"))
            if retried >= self.busy_retries:
                response.close()
                raise OllamaBusyError(
                    _busy_message(self.base_url, response.status_code, reason, retried, waited), response.status_code
                )
            response.close()
            retried += 1
            self.retried += 1
            wait = busy.wait_before(retried, retry_after)
            if self.on_retry is not None:
                self.on_retry(BusyRetry(retried, self.busy_retries, wait, response.status_code, reason))
            handle = getattr(_opening, "handle", None)  # a request another thread may stop
            if busy.wait(wait, handle.ended if handle is not None else None):
                raise OllamaConnectionError(f"The request to {self.base_url} was stopped while the server was busy.")
            waited += wait
        if response.status_code >= 400:
            try:
                self._raise_for_status(response, kwargs.get("json"), path)
            finally:
                response.close()
        return response

    def _send(self, method: str, path: str, *, stream: bool, **kwargs: Any) -> requests.Response:
        host = resolve(self.host)
        headers = auth.request_headers(host, self.headers, self.api_key_hosts)
        if isinstance(self.session, _Session):
            self.session.private_headers = frozenset(headers)
        verify = self.verify
        if verify is False and host.scheme == "https" and host.shown not in _warned_insecure:
            _warned_insecure.add(host.shown)
            print(
                f"Warning: TLS certificate checks are off for {host.shown} (GenerateMagics.verify = False): "
                "anyone on the way can read and change the traffic, tokens included.",
                file=sys.stderr,
                flush=True,
            )
        try:
            with warnings.catch_warnings():
                if verify is False:  # warned once above, not at every request
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self.session.request(
                    method,
                    host.url + path,
                    stream=stream,
                    timeout=self.timeout,
                    headers=headers,
                    verify=verify,
                    **kwargs,
                )
        except requests.exceptions.Timeout as exc:
            raise OllamaTimeoutError(
                f"Ollama at {host.shown} did not answer within {self.timeout_seconds:g} s: "
                "raise it with --timeout or %config GenerateMagics.timeout."
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise OllamaConnectionError(
                f"Could not make a trusted TLS connection to {host.shown} ({_tls_reason(exc)}): if it uses your "
                "institution's own CA, give its bundle with %config GenerateMagics.verify = '/path/to/ca.pem' "
                "or REQUESTS_CA_BUNDLE."
            ) from None
        except requests.exceptions.ConnectionError as exc:
            given = (self.host_option or "host=") if self.host else None  # None: OLLAMA_HOST or the default
            raise OllamaConnectionError(_how_to_fix_connection(host.shown, given)) from exc
        except (requests.exceptions.InvalidHeader, ValueError) as exc:
            raise OllamaConnectionError(f"Could not send the request to {host.shown}: {redact(str(exc))}") from None
        except OSError as exc:  # e.g. a CA bundle that cannot be read
            raise OllamaConnectionError(
                f"Could not send the request to {host.shown}: {redact(str(exc))} "
                "(check %config GenerateMagics.verify and REQUESTS_CA_BUNDLE)."
            ) from None

    def _raise_for_status(self, response: requests.Response, payload: Any, path: str) -> None:
        status = response.status_code
        shown = self.base_url
        model = payload.get("model") if isinstance(payload, dict) else None
        what = f"HTTP {status} {response.reason or ''}".strip()
        if _is_html(response):
            title = _page_title(_error_body(response))
            page = f" titled {title!r}" if title else ""
            if status == 401:
                hint = _CREDENTIALS_HINT
            elif status in (403, 404, 405):
                hint = "check the host and path (and the credentials)"
            else:
                hint = "the server behind it may be down or restarting; try again in a moment"
            raise OllamaResponseError(
                f"{shown} answered {what} for {path} with a web page{page}, not Ollama's API: {hint}.", status
            )
        message = _short(_error_message(response))
        if status == 404:
            if model and "not found" in message.lower() and "model" in message.lower():
                raise ModelNotFoundError(
                    f"Model {model!r} is not on the Ollama server at {shown}: "
                    f"pull it with 'ollama pull {model}' (or %ollama pull {model}), "
                    "or see %ollama list for the models you have.",
                    status,
                )
            version = self._probe_version() if path != "/api/version" else None
            if version is None:
                raise OllamaResponseError(
                    f"{shown} does not look like an Ollama server (HTTP 404 for {path}): check the host and path.",
                    status,
                )
            raise OllamaResponseError(
                f"The Ollama server at {shown} (version {version}) has no {path} (HTTP 404: {message}): "
                "it may be too old for this; update Ollama.",
                status,
            )
        if status in (401, 403):
            raise OllamaResponseError(
                f"{shown} refused the request ({what}: {message}): {_CREDENTIALS_HINT}.",
                status,
            )
        raise OllamaResponseError(f"Ollama answered HTTP {status}: {message}", status)

    def _probe_version(self) -> str | None:
        """The server's version if ``/api/version`` answers like Ollama, else None."""
        try:
            response = self._send("GET", "/api/version", stream=False)
            body = response.json() if response.status_code == 200 else None
        except (OllamaMagicError, ValueError):
            return None
        if isinstance(body, dict) and isinstance(body.get("version"), str):
            return _short(body["version"], 40)
        return None

    # -- generation -----------------------------------------------------------------

    def generate_stream(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``/api/generate`` and yield each response object as it arrives.

        Works for ``stream: false`` too (one object).  Closing the generator (or an
        exception such as KeyboardInterrupt inside the consumer) closes the connection
        at once, which tells Ollama to stop generating.
        """
        yield from self._stream("/api/generate", payload, None)

    def generate_stream_closable(self, payload: dict[str, Any], handle: OpenRequest) -> Iterator[dict[str, Any]]:
        """:meth:`generate_stream` whose connection ``handle.close()`` can end from any thread.

        The connection is known to ``handle`` from the moment it is taken (before the
        server has sent a byte), so a request can be ended while a model loads.
        """
        yield from self._stream("/api/generate", payload, handle)

    def chat_stream(self, payload: dict[str, Any], handle: OpenRequest | None = None) -> Iterator[dict[str, Any]]:
        """POST ``/api/chat`` (a conversation continued from its messages) and yield each object.

        As :meth:`generate_stream` (with ``handle``, as :meth:`generate_stream_closable`);
        the text arrives in each object's ``message`` instead of ``response``.
        """
        yield from self._stream("/api/chat", payload, handle)

    def _stream(self, path: str, payload: dict[str, Any], handle: OpenRequest | None) -> Iterator[dict[str, Any]]:
        _opening.handle = handle
        try:
            response = self._request("POST", path, json=payload, stream=True)
        finally:
            _opening.handle = None
        if handle is not None:
            handle.attach(getattr(response.raw, "connection", None))  # a session of the caller's
        try:
            yield from iter_ndjson(response, self.base_url)
        finally:
            response.close()

    # -- management -----------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        # Streamed, so an error body is read only up to ERROR_BODY_LIMIT (a success is read whole).
        response = self._request(method, path, stream=True, **kwargs)
        try:
            if _is_html(response):
                raise ValueError("a web page")
            body = response.json()
        except ValueError:
            raise OllamaResponseError(
                f"{self.base_url} answered {path} with something that is not JSON: it does not look like an Ollama "
                "server; check the host and path."
            ) from None
        finally:
            response.close()
        if not isinstance(body, dict):
            raise OllamaResponseError(
                f"{self.base_url} answered {path} with JSON of an unexpected shape "
                f"({type(body).__name__}): it does not look like an Ollama server; check the host and path."
            )
        return body

    def wait_until_up(
        self,
        seconds: float,
        on_status: Callable[[float, str], None] | None = None,
        poll: float = 1.0,
    ) -> str:
        """Ask ``/api/version`` until Ollama answers, for at most ``seconds``; return its version.

        For a Binder or JupyterHub session whose server is still starting: a refused
        connection, a timeout and a proxy's 502/503/504 mean "not yet"; anything else (a
        404 from something that is not Ollama, a 401) fails at once, since waiting will
        not change it.  ``on_status(elapsed, why)`` hears of each failed try.
        """
        start = time.monotonic()
        probe = copy.copy(self)
        probe.busy_retries = 0
        while True:
            elapsed = time.monotonic() - start
            left = seconds - elapsed
            probe.timeout = (max(0.1, min(5.0, left)), max(0.1, min(10.0, left)))
            try:
                return probe.version()
            except OllamaResponseError as exc:
                if exc.status_code not in (502, 503, 504):
                    raise
                why = f"HTTP {exc.status_code}"
            except OllamaConnectionError as exc:
                why = "not answering" if isinstance(exc, OllamaTimeoutError) else "connection refused"
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                raise OllamaConnectionError(
                    f"Ollama at {self.base_url} did not answer within {seconds:g} s ({why}): check that it is "
                    "starting (its log), or wait longer with %ollama wait SECONDS."
                )
            if on_status is not None:
                on_status(elapsed, why)
            busy.sleep(min(poll, max(0.0, seconds - elapsed)))

    def version(self) -> str:
        """The server's version string."""
        return str(self._json("GET", "/api/version").get("version", "unknown"))

    def _models(self, path: str) -> list[dict[str, Any]]:
        models = self._json("GET", path).get("models")
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    def tags(self) -> list[dict[str, Any]]:
        """The models stored on the server (``GET /api/tags``); entries that are not objects are left out."""
        return self._models("/api/tags")

    def ps(self) -> list[dict[str, Any]]:
        """The models loaded in memory now (``GET /api/ps``)."""
        return self._models("/api/ps")

    def pull(self, model: str, *, insecure: bool = False) -> Iterator[dict[str, Any]]:
        """Download a model, yielding Ollama's progress objects (``status``, ``completed``, ``total``).

        ``insecure`` lets the server use a registry without TLS (a private one on the network).
        """
        body: dict[str, Any] = {"model": model, "stream": True}
        if insecure:
            body["insecure"] = True
        response = self._request("POST", "/api/pull", json=body, stream=True)
        try:
            yield from iter_ndjson(response, self.base_url)
        finally:
            response.close()

    def show(self, model: str) -> dict[str, Any]:
        """Details of one model (``POST /api/show``)."""
        return self._json("POST", "/api/show", json={"model": model})


class OpenRequest:
    """The connection of a request in flight, so that another thread can end it at once.

    ``close()`` shuts the socket down, which wakes the reading thread at once (it sees the
    connection end) and tells Ollama to stop generating, whether or not the server is
    sending.  It may be called before the connection exists, or repeatedly: the socket is
    shut as soon as it is there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None
        self.closed = False
        #: Set by :meth:`close`: a busy server's backoff waits on it, so a stop ends it too.
        self.ended = threading.Event()

    def attach(self, connection: Any) -> None:
        """Called by the client with the connection the request uses."""
        if connection is None:
            return
        with self._lock:
            self._connection = connection
        if self.closed:
            self.close()

    def close(self) -> None:
        """End the request now (from any thread)."""
        with self._lock:
            self.closed = True
            self.ended.set()
            # The socket as connected: http.client drops ``sock`` from the connection once
            # a response that will close takes it over, but the socket is still the one read.
            sock = getattr(self._connection, "opened_sock", None) or getattr(self._connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


#: The :class:`OpenRequest` of the request being opened in this thread, if any.
_opening = threading.local()


class _Connection(HTTPConnection):
    """A connection that keeps hold of the socket it connected (see :meth:`OpenRequest.close`)."""

    opened_sock: Any = None

    def connect(self) -> None:
        super().connect()
        self.opened_sock = self.sock


class _HTTPSConnection(HTTPSConnection):
    opened_sock: Any = None

    def connect(self) -> None:
        super().connect()
        self.opened_sock = self.sock


class _ReportingPool(HTTPConnectionPool):
    """A connection pool that tells the opening request which connection it got."""

    ConnectionCls = _Connection

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        handle = getattr(_opening, "handle", None)
        if handle is not None:
            handle.attach(connection)
        return connection


class _ReportingHTTPSPool(_ReportingPool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _ReportingPool, "https": _ReportingHTTPSPool}


def _session() -> requests.Session:
    """A requests session whose connections an :class:`OpenRequest` can reach."""
    session = _Session()
    adapter = _Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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

    A line that is not JSON, or longer than :data:`MAX_LINE_BYTES`, raises
    :class:`OllamaResponseError`; a connection that breaks raises
    :class:`OllamaConnectionError`.  A stream that simply ends before ``done`` is left
    to the caller to notice.
    """
    held: list[bytes] = []  # the start of a line still unfinished, in the pieces it came in
    size = 0
    try:
        for block in _blocks(response):
            lines = block.split(b"\n")
            if len(lines) == 1:  # the middle of a long line
                held.append(block)
                size += len(block)
                if size > MAX_LINE_BYTES:
                    raise _line_too_long(base_url)
                continue
            if held:
                held.append(lines[0])
                lines[0] = b"".join(held)
                held = []
            tail = lines.pop()
            if tail:
                held = [tail]
            size = len(tail)
            for line in lines:
                if line.strip():
                    yield _decode_line(line)
        pending = b"".join(held)
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
                "raise it with --timeout or %config GenerateMagics.timeout."
            ) from exc
        raise OllamaConnectionError(
            f"The connection to Ollama at {base_url} broke before the answer was complete."
        ) from exc


def _line_too_long(base_url: str) -> OllamaResponseError:
    return OllamaResponseError(
        f"Ollama at {base_url} sent a line of over {MAX_LINE_BYTES // (1024 * 1024)} MiB without ending it: "
        "the answer was stopped there (a broken server or proxy?)."
    )


#: A surrogate escape in the JSON text (``\\ud83d``); valid pairs decode to one character,
#: so a surrogate left in the decoded text stood alone.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _decode_line(line: bytes) -> dict[str, Any]:
    # Decoded here rather than by json.loads: strict UTF-8 is the fast path (json's own
    # encoding detection costs more than the parse of a short line), and bytes that are
    # not UTF-8 (a broken server or proxy, or UTF-8-encoded surrogates, which json would
    # let through) become U+FFFD where they were, and the answer goes on.
    try:
        text = line.decode()
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        if not text.startswith("\ufeff"):
            raise _not_json(line) from exc
        obj = _loads_or_raise(text[1:], line)  # a byte order mark, as json.loads(bytes) allowed
    if not isinstance(obj, dict):
        raise OllamaResponseError(f"Ollama sent an unexpected line: {obj!r:.80}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        obj = _without_lone_surrogates(obj)
    if "error" in obj:
        raise OllamaResponseError(f"Ollama reported an error: {obj['error']}", -1)
    return obj


def _loads_or_raise(text: str, line: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _not_json(line) from exc


def _not_json(line: bytes) -> OllamaResponseError:
    snippet = line[:80].decode("utf-8", "replace")
    return OllamaResponseError(f"Ollama sent a line that is not JSON: {snippet!r}")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD.

    JSON lets a server write ``"\\ud83d"`` alone; Python decodes it to a string that
    cannot be encoded to UTF-8, so the kernel could not send the answer to the notebook
    (and it would be lost).  Replaced here, the answer shows and is kept.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    return value
