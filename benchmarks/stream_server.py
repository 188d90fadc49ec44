"""A fast fake Ollama for the benchmarks: ``POST /api/generate`` streams NDJSON.

The answer is shaped by ``key=value`` words in the request's prompt (nothing else in
the request matters), so every client under test sends the same request:

* ``chunks=N``      the number of streamed objects before the final one (default 1000)
* ``delay_ms=D``    wait D ms after reading the request before the first byte is sent
* ``bytes=B``       instead of ``chunks``: stream at least B bytes of answer text

Each streamed object is one HTTP chunk (chunked transfer encoding), as Ollama sends
them: ``{"model":"bench","created_at":"...","response":" word","done":false}``.  The
last one is a complete ``done: true`` object with ``done_reason``, ``context`` and the
statistics fields.  Bodies are built once per shape, cached, and sent with one
``sendall``, so the server costs next to nothing per chunk: a client reading the
socket directly sees the server's own speed (``measure_server``).

With ``--slots K`` (``python stream_server.py --slots 2``) at most K answers are being
sent at once, like an Ollama with ``OLLAMA_NUM_PARALLEL=K``: the others wait their turn
(their delay starts when they get a slot).  ``GET /api/tags`` lists the ``bench`` model.

Run as a subprocess (``python stream_server.py`` prints ``PORT <n>`` and serves until
its standard input closes) so that it runs on the other core, or in-process with
:class:`StreamServer`.  It listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from functools import lru_cache

MODEL = "bench"
CREATED_AT = "2025-01-01T00:00:00.000000Z"

#: Markdown-ish text the answer is cut from: paragraphs, a list, bold and code spans, so
#: that rendering it costs what rendering a real answer costs.
SOURCE_TEXT = (
    "The sky looks blue because **Rayleigh scattering** favours short wavelengths; "
    "sunlight meets molecules of nitrogen and oxygen that are much smaller than the "
    "wavelength of visible light, and the scattered intensity goes as the inverse fourth "
    "power of it.\n\n"
    "- violet is scattered even more, but the sun emits less of it\n"
    "- our eyes are less sensitive to violet than to blue\n"
    "- at sunset the path is long, so the blue is scattered away and `red` remains\n\n"
    "In code you could model it with `intensity = k / wavelength ** 4`, which shows at "
    "once why halving the wavelength gives sixteen times the scattering. Clouds are white "
    "because their droplets are large, and *Mie scattering* is nearly independent of the "
    "wavelength.\n\n"
)
#: The tokens: a word with its leading space, or a run of newlines (a few characters each).
TOKENS = re.findall(r"\n+|[ ]?[^\s]+", SOURCE_TEXT)


def _token(i: int) -> str:
    return TOKENS[i % len(TOKENS)]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@lru_cache(maxsize=16)
def build_body(chunks: int = 0, min_bytes: int = 0) -> tuple[bytes, int, int]:
    """The chunked body for an answer: (body, number of streamed chunks, answer bytes)."""
    head = b'{"model":"' + MODEL.encode() + b'","created_at":"' + CREATED_AT.encode() + b'","response":'
    tail = b',"done":false}\n'
    parts = []
    size = 0
    i = 0
    while (i < chunks) if not min_bytes else (size < min_bytes):
        token = _token(i)
        size += len(token.encode())
        parts.append(_chunk(head + json.dumps(token).encode() + tail))
        i += 1
    final = {
        "model": MODEL,
        "created_at": CREATED_AT,
        "response": "",
        "done": True,
        "done_reason": "stop",
        "context": list(range(1, 129)),
        "total_duration": 1_234_567_890,
        "load_duration": 12_345_678,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 130_000_000,
        "eval_count": i,
        "eval_duration": 1_000_000_000,
    }
    parts.append(_chunk(json.dumps(final, separators=(",", ":")).encode() + b"\n"))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts), i, size


def parse_shape(prompt: str) -> dict[str, float]:
    """``"chunks=100 delay_ms=5"`` → ``{"chunks": 100.0, "delay_ms": 5.0}``."""
    return {k: float(v) for k, v in re.findall(r"\b(chunks|delay_ms|bytes)=([0-9.]+)", prompt)}


def _headers(status: str, extra: str) -> bytes:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    return f"HTTP/1.1 {status}\r\nDate: {date}\r\n{extra}\r\n".encode()


def _json_response(status: str, obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return _headers(status, f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n") + body


#: Set by ``--slots K``: how many answers may be sent at once (None: no limit).
SLOTS: threading.Semaphore | None = None


def _respond(method: bytes, path: bytes, body: bytes) -> tuple[bytes, float]:
    """The whole response for one request, and the delay before sending it."""
    if path == b"/api/version":
        return _json_response("200 OK", {"version": "0.0.0-bench"}), 0.0
    if path == b"/api/tags":
        model = {"name": f"{MODEL}:latest", "model": f"{MODEL}:latest", "digest": "0" * 64}
        return _json_response("200 OK", {"models": [model]}), 0.0
    if method != b"POST" or path != b"/api/generate":
        return _json_response("404 Not Found", {"error": f"{path.decode()} not found"}), 0.0
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return _json_response("400 Bad Request", {"error": "invalid JSON"}), 0.0
    shape = parse_shape(str(request.get("prompt", "")))
    delay = shape.get("delay_ms", 0.0) / 1000
    data, _, _ = build_body(int(shape.get("chunks", 1000)) if "bytes" not in shape else 0, int(shape.get("bytes", 0)))
    if request.get("stream", True) is False:
        text = "".join(json.loads(line)["response"] for line in _lines(data)[:-1])
        final = json.loads(_lines(data)[-1])
        final["response"] = text
        return _json_response("200 OK", final), delay
    head = _headers("200 OK", "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n")
    return head + data, delay


def _lines(data: bytes) -> list[bytes]:
    """The NDJSON lines inside a chunked body (only for the rare stream: false)."""
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        if size == 0:
            return out
        out.append(data[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


def _serve_connection(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].split(b" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip().lower()
            length = int(headers.get(b"content-length", b"0"))
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            response, delay = _respond(method, path.split(b"?")[0], body)
            slots = SLOTS if path.startswith(b"/api/generate") else None
            with slots or contextlib.nullcontext():
                if delay:
                    time.sleep(delay)
                conn.sendall(response)
            if headers.get(b"connection") == b"close":
                return
    except (ConnectionError, OSError):
        return
    finally:
        conn.close()


class StreamServer:
    """The server on a daemon thread: ``with StreamServer() as s: s.port``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=_serve_connection, args=(conn,), daemon=True).start()

    def start(self) -> StreamServer:
        self._thread.start()
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _post(port: int, prompt: str) -> bytes:
    body = json.dumps({"model": MODEL, "prompt": prompt, "stream": True}).encode()
    return (
        b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (port, len(body), body)
    )


def measure_server(port: int, prompt: str) -> tuple[float, float, int]:
    """Read one whole answer straight off the socket: (seconds, first-byte seconds, bytes)."""
    start = time.perf_counter()
    first = 0.0
    total = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_post(port, prompt))
        tail = b""
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            if not total:
                first = time.perf_counter() - start
            total += len(data)
            tail = (tail + data)[-5:]
            if tail == b"0\r\n\r\n":
                break
    return time.perf_counter() - start, first, total


def main() -> None:
    global SLOTS  # noqa: PLW0603 - a setting of this process, read by every connection
    if "--slots" in sys.argv:
        SLOTS = threading.Semaphore(int(sys.argv[sys.argv.index("--slots") + 1]))
    server = StreamServer().start()
    print(f"PORT {server.port}", flush=True)
    # Serve until the parent closes our stdin (or dies): no stray server is left behind.
    sys.stdin.read()
    server.close()


if __name__ == "__main__":
    main()
