"""What a person sees of ``%%generate --each`` in JupyterLab: a progress bar, then a table.

The fake server answers each item slowly (so the bar is seen moving) and echoes hostile
HTML back: in the table it must be text.  Screenshots: /tmp/browser-shots/batch-*.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import scripted_server
from .jupyterlab_page import (
    SHOTS,
    cell,
    dangerous_elements,
    open_notebook,
    output,
    run_all_cells,
    wait_all_executed,
    watch_dangerous_elements,
    write_notebook,
)

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")


@pytest.fixture
def slow_echo() -> Iterator[str]:
    from werkzeug.wrappers import Request, Response

    def respond(request: Request) -> Response:
        body = json.loads(request.data or b"{}")
        prompt = body.get("prompt", "")
        time.sleep(0.4)
        if "fail" in prompt:
            return Response(json.dumps({"error": "out of memory"}), status=500, mimetype="application/json")
        lines = [
            {"model": "echo", "response": f"You said: {prompt}", "done": False},
            {"model": "echo", "response": "", "done": True, "done_reason": "stop", "eval_count": 5,
             "eval_duration": 100_000_000, "total_duration": 400_000_000},
        ]  # fmt: skip
        return Response("".join(json.dumps(x) + "\n" for x in lines), mimetype="application/x-ndjson")

    with scripted_server("/api/generate", respond) as host:
        yield host


def test_each_shows_a_progress_bar_then_an_escaped_table(page: Any, lab: Any, slow_echo: str) -> None:
    items = ['<img src=x onerror="window.__pwned=1">', "<script>window.__pwned=2</script>", "please fail"]
    items += [f"item number {i}" for i in range(13)]
    write_notebook(
        lab.root / "batch.ipynb",
        "%load_ext ollama_magic",
        f"xs = {items!r}",
        f"%%generate -m echo --host {slow_echo} --each xs --concurrency 2 -o out\n{{item}}",
    )
    open_notebook(page, lab.notebook_url("batch.ipynb"))
    watch_dangerous_elements(page, 2)
    run_all_cells(page)
    bar = output(page, 2).locator(".ollama-magic-progress")
    bar.wait_for(timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.ollama-magic-progress')].some(e => /^[1-9]/.test(e.textContent))",
        timeout=30_000,
    )
    cell(page, 2).screenshot(path=str(SHOTS / "batch-progress-cell.png"))
    assert "/ 16" in bar.inner_text()
    footer = output(page, 2).locator(".ollama-magic-footer")
    footer.wait_for(timeout=90_000)
    wait_all_executed(page)
    cell(page, 2).screenshot(path=str(SHOTS / "batch-table-cell.png"))
    table = output(page, 2).locator("table")
    text = table.inner_text()
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert "<script>window.__pwned=2</script>" in text
    assert "failed: Ollama answered HTTP 500: out of memory" in text
    assert table.locator("tr").count() == 11  # header + the first 10 rows
    assert "16 items · 15 done · 1 failed" in footer.inner_text()
    assert page.evaluate("() => window.__pwned") is None
    assert output(page, 2).locator("script, img, iframe, object, embed").count() == 0
    assert dangerous_elements(page) == []
