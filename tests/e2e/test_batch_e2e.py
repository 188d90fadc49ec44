"""generate_many and %%generate --each against the real Ollama, seen through a counting proxy.

The proxy sits between the client and the real server and counts every request by path,
so "the re-run was served from the cache" is proven by the server never being asked
(zero ``/api/generate``), and "Ctrl-C closed the open requests" by the proxy seeing the
client's connections go away mid-answer.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from ollama_magic import BatchInterrupted, generate_many
from ollama_magic.batch.runner import NOT_RUN, status

from .conftest import LONG, SHORT
from .support import url

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["positive", "negative"]}, "stars": {"type": "integer"}},
    "required": ["label", "stars"],
}


class CountingProxy:
    """A pass-through HTTP proxy to the real server that counts requests and dropped clients."""

    def __init__(self, upstream: str) -> None:
        self.upstream = url(upstream)
        self.counts: Counter[str] = Counter()
        self.dropped = 0
        self.streaming = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                with proxy.lock:
                    proxy.counts[self.path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = requests.request(
                    method,
                    proxy.upstream + self.path,
                    data=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    stream=True,
                    timeout=300,
                )
                try:
                    self.send_response(upstream.status_code)
                    self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    with proxy.lock:
                        proxy.streaming += 1
                    try:
                        for block in upstream.iter_content(chunk_size=None):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                            self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                    except OSError:
                        with proxy.lock:
                            proxy.dropped += 1
                        self.close_connection = True
                    finally:
                        with proxy.lock:
                            proxy.streaming -= 1
                finally:
                    upstream.close()  # so the real server stops generating too

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def proxy(real_host: str) -> Iterator[CountingProxy]:
    p = CountingProxy(real_host)
    p.thread.start()
    try:
        yield p
    finally:
        p.server.shutdown()
        p.server.server_close()


def test_twenty_items_with_a_schema_then_a_rerun_served_from_the_cache_with_no_generate_request(
    proxy: CountingProxy, tmp_path: Path
) -> None:
    prompts = [f"Review {i}: {'great' if i % 2 else 'awful'} product. Label it." for i in range(20)]
    cache = tmp_path / "answers.sqlite"
    first = generate_many(
        prompts, SHORT, host=proxy.host, format=SCHEMA, concurrency=2, cache=cache, progress=False, timeout=120
    )
    assert first.failed == [], first.summary()
    assert all(set(r.data) == {"label", "stars"} and r.data["label"] in ("positive", "negative") for r in first)
    assert [r.request["prompt"].split(":")[0] for r in first] == [f"Review {i}" for i in range(20)]  # input order
    assert proxy.counts["/api/generate"] == 20
    assert proxy.counts["/api/tags"] == 1  # the model's digest, once

    again = generate_many(
        prompts, SHORT, host=proxy.host, format=SCHEMA, concurrency=2, cache=cache, progress=False, timeout=120
    )
    assert proxy.counts["/api/generate"] == 20  # not one more: every answer came from the cache
    assert again.from_cache == 20 and all(status(r) == "cached" for r in again)
    assert [r.data for r in again] == [r.data for r in first]
    assert "20 done (20 from cache)" in again.summary()


def test_each_over_a_dataframe_in_a_notebook_like_shell(real_nb: Any, real_host: str) -> None:
    real_nb.user_ns["df"] = pd.DataFrame({"review": ["Loved it", "Hated it", "Fine"], "id": [7, 8, 9]})
    real_nb.user_ns["schema"] = SCHEMA
    cell = f"%%generate -m {SHORT} --each df --format schema --concurrency 2 -o out\nReview {{id}}: {{review}}"
    result = real_nb.run_cell(cell)
    assert result.success, result.error_in_exec
    out = real_nb.user_ns.pop("out")
    assert list(out.columns) == ["review", "id", "response", "label", "stars"]
    assert set(out["label"]) <= {"positive", "negative"}
    html = real_nb.publisher.messages[-1]["data"]["text/html"]
    assert "Review 7: Loved it" in html and "3 items · 3 done · 0 failed" in html
    assert "ollama-magic-footer" in html


def test_ctrl_c_mid_batch_keeps_finished_items_and_drops_the_open_requests(proxy: CountingProxy) -> None:
    # Two quick items finish, then long ones (thousands of tokens) are in flight.
    items: list[Any] = [f"quick {i}" for i in range(2)]
    items += [{"prompt": f"long {i}", "model": LONG, "options": {"num_predict": 20000}} for i in range(6)]
    done = threading.Event()

    class InterruptWhenLongOnesRun:
        def start(self, state: Any) -> None:
            pass

        def update(self, state: Any) -> None:
            if state.done >= 2 and proxy.streaming >= 1 and not done.is_set():
                done.set()
                _thread.interrupt_main()

        def finish(self, state: Any, results: Any) -> None:
            pass

    started = time.monotonic()
    with pytest.raises(BatchInterrupted) as caught:
        generate_many(items, SHORT, host=proxy.host, concurrency=2, progress=InterruptWhenLongOnesRun(), timeout=120)
    assert time.monotonic() - started < 120  # 6 answers of 20000 tokens would take far longer
    results = caught.value.results
    assert [r.text for r in results[:2]] == ["Hey now!", "Hey now!"]
    assert all(r.error == NOT_RUN and not r.complete for r in results[2:])
    assert proxy.counts["/api/generate"] < len(items)  # the rest were never sent
    deadline = time.monotonic() + 10
    while proxy.dropped < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.dropped >= 1  # the proxy saw the open answer's client go away
