"""What a person sees of ``%ollama pull`` in JupyterLab: a progress bar with the layer, MB,
rate and time left while it runs, then a green bar and the saved "Pulled ..." line.

A fake server sends Ollama's progress objects slowly (a real pull on loopback is over in a
fraction of a second; tests/e2e/test_pull_e2e.py pulls from a real registry), with HTML in
a status text: it must show as text.  Screenshots: /tmp/browser-shots/pull-*.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import scripted_server
from .jupyterlab_page import SHOTS, cell, open_notebook, output, run_all_cells, wait_all_executed, write_notebook

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")

DIGEST = "sha256:c5396e06af294bd101b30dce59131a76d2b773e76950acc870eda801d3ab0515"


@pytest.fixture
def slow_pull() -> Iterator[str]:
    from werkzeug.wrappers import Request, Response

    total = 397_808_192

    def respond(request: Request) -> Response:
        def lines() -> Iterator[bytes]:
            yield b'{"status": "pulling manifest"}\n'
            for step in range(41):
                time.sleep(0.1)
                done = total * step // 40
                obj = {"status": "pulling c5396e06af29", "digest": DIGEST, "total": total, "completed": done}
                yield (json.dumps(obj) + "\n").encode()
            for status in ("verifying sha256 digest", "writing <img src=x onerror=window.__pwned=1>", "success"):
                yield (json.dumps({"status": status}) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    with scripted_server("/api/pull", respond) as host:
        yield host


def test_pull_shows_a_live_progress_bar_then_the_result(page: Any, lab: Any, slow_pull: str) -> None:
    write_notebook(
        lab.root / "pull.ipynb",
        f"%load_ext ollama_magic\n%config GenerateMagics.host = {slow_pull!r}",
        "%ollama pull qwen2.5:0.5b",
    )
    open_notebook(page, lab.notebook_url("pull.ipynb"))
    run_all_cells(page)
    bar = output(page, 1).locator(".widget-progress, .jupyter-widget-progress, progress, .progress").first
    bar.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => /MB\\/s/.test([...document.querySelectorAll('.jp-OutputArea-output')]"
        ".map(e => e.textContent).join(' '))",
        timeout=30_000,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    cell(page, 1).screenshot(path=str(SHOTS / "pull-progress-cell.png"))
    live = output(page, 1).inner_text()
    assert "qwen2.5:0.5b" in live and "layer 1 of 1" in live and "/ 397.8 MB" in live and "left" in live
    wait_all_executed(page)
    page.wait_for_function(
        "() => /Pulled qwen2.5:0.5b/.test([...document.querySelectorAll('.jp-OutputArea-output')]"
        ".map(e => e.textContent).join(' '))",
        timeout=30_000,
    )
    cell(page, 1).screenshot(path=str(SHOTS / "pull-done-cell.png"))
    assert "Pulled qwen2.5:0.5b: 1 layers, 397.8 MB, ready to use." in cell(page, 1).inner_text()
    assert page.evaluate("() => window.__pwned") is None
    assert cell(page, 1).locator("img").count() == 0


@pytest.fixture
def failing_pull() -> Iterator[str]:
    """A server that cannot reach the registry: "pulling manifest", then Ollama's error."""
    from werkzeug.wrappers import Request, Response

    def respond(request: Request) -> Response:
        def lines() -> Iterator[bytes]:
            yield b'{"status": "pulling manifest"}\n'
            time.sleep(0.5)
            error = 'pull model manifest: Get "https://registry.ollama.ai/v2/": dial tcp: no such host'
            yield (json.dumps({"error": error}) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    with scripted_server("/api/pull", respond, json={"/api/tags": {"models": []}}) as host:
        yield host


def test_a_failed_pull_shows_a_red_bar_that_says_failed(page: Any, lab: Any, failing_pull: str) -> None:
    """Not an empty bar still saying "pulling manifest", as if it were still working."""
    write_notebook(
        lab.root / "pull-failed.ipynb",
        f"%load_ext ollama_magic\n%config GenerateMagics.host = {failing_pull!r}",
        "%ollama pull qwen2.5:0.5b",
    )
    open_notebook(page, lab.notebook_url("pull-failed.ipynb"))
    run_all_cells(page)
    wait_all_executed(page)
    page.wait_for_function(
        "() => /RegistryUnreachableError/.test([...document.querySelectorAll('.jp-OutputArea-output')]"
        ".map(e => e.textContent).join(' '))",
        timeout=30_000,
    )
    bar = cell(page, 1).locator(".progress-bar-danger")
    bar.wait_for(timeout=30_000)
    box = bar.bounding_box()
    assert box is not None and box["width"] > 100  # a red bar one can see, not an empty one
    text = cell(page, 1).inner_text()
    assert "failed" in text and "pulling manifest" not in text
    assert text.count("registry.ollama.ai") == 1  # named once, in the error line
    SHOTS.mkdir(parents=True, exist_ok=True)
    cell(page, 1).screenshot(path=str(SHOTS / "pull-failed-cell.png"))
