"""examples/classroom_app.ipynb served by Voilà, as a student meets it (real Voilà, real Ollama, Chromium).

The page shows the panel and no code; a prompt typed and Generate pressed streams the
answer in; Stop during a long answer (tiny-long, no length limit) ends it at once and keeps
what came.  Screenshots: ``SHOTS/voila-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import LONG, SHORT
from .conftest import Lab, start_jupyter
from .jupyterlab_page import SHOTS

pytest.importorskip("voila", reason="the Voilà test needs `pip install voila`")

APP = Path(__file__).resolve().parents[2] / "examples" / "classroom_app.ipynb"
PANEL = ".ollama-magic-panel"

# Polls the answer to one prompt as it streams, in the page (no round trip per sample): its lengths.
_SAMPLE = """
(prompt) => {
  window.__lengths = [];
  const tick = () => {
    const turn = [...document.querySelectorAll('.ollama-panel-turn')]
      .find(t => t.querySelector('.ollama-panel-prompt')?.innerText === prompt);
    const answer = turn?.querySelector('.ollama-panel-answer');
    window.__lengths.push(answer ? answer.innerText.length : 0);
    if (window.__lengths.length < 20000) setTimeout(tick, 20);
  };
  tick();
}
"""


@pytest.fixture
def voila_app(tmp_path: Path, real_host: str) -> Iterator[Lab]:
    server, stop = start_jupyter(
        tmp_path, "voila", str(APP), what="voila", env_extra={"OLLAMA_MAGIC_MODEL": SHORT, "OLLAMA_HOST": real_host}
    )
    try:
        yield server
    finally:
        stop()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_classroom_app_in_voila_generates_streams_and_stops(browser: Any, voila_app: Lab) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{voila_app.url}/?token={voila_app.token}", timeout=120_000)
        panel = page.locator(PANEL)
        panel.wait_for(state="visible", timeout=120_000)
        # An app: the panel, no code and no prompts of cells.
        body = page.inner_text("body")
        assert "GeneratePanel" not in body and "model = " not in body
        assert page.locator(".cm-editor, .jp-CodeCell .jp-InputArea").count() == 0
        assert panel.get_by_role("combobox", name="Model").input_value() == SHORT
        shot(page, "voila-app")

        # Type, Generate (the keyboard: Tab from the prompt reaches Generate), the answer and its footer.
        prompt = panel.get_by_role("textbox", name="Prompt")
        prompt.fill("Say hello")
        prompt.press("Tab")
        assert page.evaluate("() => document.activeElement.innerText.trim()") == "Generate"
        page.keyboard.press("Enter")
        footer = panel.locator(".ollama-panel-footer")
        footer.wait_for(timeout=90_000)
        assert SHORT in footer.inner_text() and "tokens" in footer.inner_text()
        # (the panel samples at temperature 0.8: tiny's words vary, its footer does not)
        assert panel.locator(".ollama-panel-answer").last.inner_text().strip()
        assert "Answer complete." in panel.locator(".ollama-panel-announce").inner_text()
        shot(page, "voila-answered")

        # A long answer streams in; Stop ends it and keeps what came.
        panel.get_by_role("combobox", name="Model").fill(LONG)
        prompt.fill("Go on and on")
        page.evaluate(_SAMPLE, "Go on and on")
        panel.get_by_role("button", name="Generate").click()
        page.wait_for_function(
            "() => new Set(window.__lengths.filter(n => n > 0)).size >= 3", timeout=90_000, polling=50
        )
        shot(page, "voila-streaming")
        panel.get_by_role("button", name="Stop").click()
        stopped = panel.locator(".ollama-panel-footer:has-text('Stopped')")
        stopped.wait_for(timeout=15_000)
        kept = panel.locator(".ollama-panel-answer").last.inner_text()
        assert len(kept) > 0
        lengths = [n for n in page.evaluate("() => window.__lengths") if n > 0]
        assert lengths == sorted(lengths)  # it grew, it was never emptied
        assert not panel.get_by_role("button", name="Generate").is_disabled()
        shot(page, "voila-stopped")
    finally:
        context.close()


def test_the_app_at_voila_render_in_a_jupyter_server(page: Any, lab: Lab) -> None:
    """A JupyterHub user's server is a Jupyter server: Voilà's extension serves the app at
    /voila/render/PATH there (what ``c.Spawner.default_url`` points students to)."""
    (lab.root / "classroom_app.ipynb").write_bytes(APP.read_bytes())
    page.goto(f"{lab.url}/voila/render/classroom_app.ipynb?token={lab.token}", timeout=120_000)
    panel = page.locator(PANEL)
    panel.wait_for(state="visible", timeout=120_000)
    assert page.locator(".cm-editor, .jp-CodeCell .jp-InputArea").count() == 0
    assert panel.get_by_role("button", name="Generate", exact=False).count() == 1
    shot(page, "voila-render-in-jupyter-server")
