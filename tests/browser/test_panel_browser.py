"""The ``%ollama ui`` panel as a person sees it in JupyterLab (real JupyterLab, headless Chromium).

- no label or button text is cut ("Temperat...", "New conversat...");
- the answer has ordinary line spacing (not the widgets' 28 px line height);
- the conversation's turns stay in view, prompt and answer each, the streaming one last;
- Stop ends a request to a server that went silent at once, with one calm message in
  characters the default fonts have; a server error shows as an error;
- a saved notebook, reopened without its kernel, says to run the cell again.

A fake Ollama plays the server (a silent one and a failing one are what a real server
cannot be made to be).  Screenshots: ``SHOTS/panel-*.png``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .jupyterlab_page import CELLS, SHOTS, cell, open_notebook, run_all_cells, save, wait_all_executed, write_notebook

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")

ANSWER = (
    "Rayleigh scattering makes the sky blue.\n\n"
    "Short wavelengths scatter more than long ones, so blue light reaches you from every "
    "direction of the sky, while the sun itself looks slightly yellow. This line is long "
    "enough to wrap onto a second line in the panel.\n\n- one\n- two"
)


@pytest.fixture
def panel_ollama() -> Iterator[str]:
    """A fake Ollama: an ordinary answer, one that goes silent, and one that fails midway.

    Threaded, so the silent answer (which holds its handler until the test ends) does not
    hold up the next request.
    """
    httpserver = pytest.importorskip("pytest_httpserver")
    from werkzeug.wrappers import Response

    fake_ollama = httpserver.HTTPServer(host="127.0.0.1", port=0, threaded=True)
    fake_ollama.start()

    release = threading.Event()

    def line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj) + "\n").encode()

    def piece(text: str) -> dict[str, Any]:
        return {"model": "tiny", "created_at": "2026-11-26T12:00:00Z", "response": text, "done": False}

    def respond(request: Any) -> Response:
        prompt = json.loads(request.data or b"{}").get("prompt", "")

        def lines() -> Iterator[bytes]:
            if "silent" in prompt:
                yield line(piece("Half an answer, then the server goes quiet"))
                release.wait(60)
                return
            if "fail" in prompt:
                yield line(piece("Half an answer"))
                yield line({"error": "model runner has unexpectedly stopped"})
                return
            text = ANSWER if "sky" in prompt else "Because the path through the air is longer at sunset."
            for word in text.split(" "):
                yield line(piece(word + " "))
            yield line(
                {
                    **piece(""),
                    "done": True,
                    "done_reason": "stop",
                    "context": [1, 2, 3],
                    "total_duration": 900_000_000,
                    "load_duration": 10_000_000,
                    "prompt_eval_count": 5,
                    "prompt_eval_duration": 20_000_000,
                    "eval_count": 40,
                    "eval_duration": 750_000_000,
                }
            )

        return Response(lines(), mimetype="application/x-ndjson")

    fake_ollama.expect_request("/api/tags").respond_with_json({"models": [{"name": "tiny:latest"}]})
    fake_ollama.expect_request("/api/generate", method="POST").respond_with_handler(respond)
    try:
        yield f"127.0.0.1:{fake_ollama.port}"
    finally:
        release.set()
        fake_ollama.clear()
        fake_ollama.stop()


PANEL_SEL = f"{CELLS} .ollama-magic-panel"


def shot(page: Any, name: str, locator: Any = None) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    (locator or page).screenshot(path=str(SHOTS / f"{name}.png"))


def generate(page: Any, panel: Any, prompt: str) -> None:
    panel.locator("textarea").fill(prompt)
    panel.locator("button:has-text('Generate')").click()


def drawn_text(panel: Any) -> str:
    """The panel's text as drawn: without the line only screen readers get (how an answer ended)."""
    return str(
        panel.evaluate(
            "(root) => { const c = root.cloneNode(true);"
            " c.querySelectorAll('.ollama-panel-announce').forEach(e => e.remove());"
            " document.body.appendChild(c); const t = c.innerText; c.remove(); return t; }"
        )
    )


def cut_texts(panel: Any) -> list[str]:
    """Labels and buttons whose text does not fit (shown with an ellipsis)."""
    return list(
        panel.evaluate(
            "(root) => [...root.querySelectorAll('.widget-label, button, .widget-label-basic')]"
            ".filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1)"
            ".map(e => e.innerText)"
        )
    )


def test_the_panel_reads_well_keeps_the_conversation_and_stops_at_once(page: Any, lab: Any, panel_ollama: str) -> None:
    path = write_notebook(
        lab.root / "panel.ipynb",
        f"%load_ext ollama_magic\n%config GenerateMagics.host = {panel_ollama!r}\n"
        "%config GenerateMagics.model = 'tiny'",
        "%ollama ui",
    )
    open_notebook(page, lab.notebook_url("panel.ipynb"))
    run_all_cells(page)
    wait_all_executed(page)
    panel = page.locator(PANEL_SEL)
    panel.wait_for(state="visible", timeout=30_000)
    shot(page, "panel-empty", cell(page, 1))
    assert cut_texts(panel) == []
    reopened_line = cell(page, 1).locator(".ollama-magic-panel-reopened")
    assert reopened_line.count() == 1 and not reopened_line.is_visible()  # only for a reopened notebook

    # Two turns: both stay in view, in order, the newest last.
    generate(page, panel, "Why is the sky blue?")
    panel.locator(".ollama-panel-footer:has-text('tiny · 40 tokens')").first.wait_for(timeout=30_000)
    generate(page, panel, "And why are sunsets red?")
    panel.locator(".ollama-panel-turn:has-text('sunset') .ollama-panel-footer").wait_for(timeout=30_000)
    turns = panel.locator(".ollama-panel-turn")
    assert turns.count() == 2
    assert "Why is the sky blue?" in turns.nth(0).inner_text()
    assert "Rayleigh scattering" in turns.nth(0).inner_text()
    assert "And why are sunsets red?" in turns.nth(1).inner_text()

    # Ordinary line spacing: a wrapped paragraph's lines are about 1.5 font sizes apart.
    paragraph = turns.nth(0).locator(".ollama-panel-answer p").nth(1)
    metrics = paragraph.evaluate(
        "(p) => { const s = getComputedStyle(p); const r = p.getClientRects();"
        " const lines = Math.round(p.getBoundingClientRect().height / parseFloat(s.lineHeight));"
        " return {font: parseFloat(s.fontSize), line: parseFloat(s.lineHeight), lines,"
        " height: p.getBoundingClientRect().height, rects: r.length}; }"
    )
    assert metrics["line"] <= 1.7 * metrics["font"], metrics
    shot(page, "panel-conversation", cell(page, 1))

    # Stop while the server is silent: at once, one message, no symbol-font glyph.
    generate(page, panel, "Be silent")
    panel.locator(".ollama-panel-answer:has-text('goes quiet')").wait_for(timeout=30_000)
    panel.locator("button:has-text('Stop')").click()
    stopped = panel.locator(".ollama-panel-footer:has-text('Stopped')")
    stopped.wait_for(timeout=5_000)  # a stop that waited for the server would take 60 s
    assert stopped.inner_text() == "Stopped — the partial answer is kept; the conversation is unchanged."
    assert drawn_text(panel).count("Stopped") == 1
    assert "⏹" not in drawn_text(panel)
    assert not panel.locator("button:has-text('Generate')").is_disabled()
    shot(page, "panel-stopped", cell(page, 1))

    # A server error midway is an error, not a stop.
    generate(page, panel, "Now fail")
    failed = panel.locator(".ollama-panel-footer:has-text('Failed')")
    failed.wait_for(timeout=30_000)
    text = drawn_text(panel)
    assert "model runner has unexpectedly stopped" in text
    assert text.count("Stopped") == 1  # only the earlier, real stop
    error_line = panel.locator(":text('model runner has unexpectedly stopped')").last
    assert error_line.evaluate("(e) => getComputedStyle(e).color") != failed.evaluate(
        "(e) => getComputedStyle(e.closest('.ollama-panel-turn').querySelector('.ollama-panel-answer')).color"
    )  # the error is in its own (error) colour
    error_line.scroll_into_view_if_needed()
    shot(page, "panel-failed")

    # New conversation clears the turns.
    panel.locator("button:has-text('New conversation')").click()
    page.wait_for_function(
        "(sel) => document.querySelector(sel).querySelectorAll('.ollama-panel-turn').length === 0", arg=PANEL_SEL
    )
    # The status line is another widget, updated by its own message after the turns went.
    panel.locator(":text('starts afresh')").wait_for(timeout=10_000)
    assert "model runner has unexpectedly stopped" not in drawn_text(panel)

    # Saved, then reopened without its kernel: a line says to run the cell again.
    save(page)
    lab.shutdown_kernels()
    page.goto(lab.notebook_url("panel.ipynb"))
    output = cell(page, 1).locator(".jp-OutputArea-output").first
    output.wait_for(timeout=30_000)
    page.wait_for_function(
        "(cells) => /run the cell again/i.test(document.querySelectorAll(cells)[1]?.innerText || '')",
        arg=CELLS,
        timeout=30_000,
    )
    assert cell(page, 1).locator(".ollama-magic-panel-reopened").is_visible()
    shot(page, "panel-reopened", cell(page, 1))
    assert path.exists()
