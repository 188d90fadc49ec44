"""The panel and the outputs with the keyboard alone and a screen reader, in JupyterLab and Notebook 7.

- Tab order model -> prompt -> Generate, the focused control visibly outlined;
- every control has an accessible name (Playwright's accessibility snapshot: what a screen
  reader is given), and a polite status region says once how an answer ended;
- a token's alternatives in the probability view open from the keyboard (Tab, Enter);
- a comparison's columns are headed by headings, a batch table has column headers.

A fake Ollama answers the panel (tests/browser/test_panel_browser.py's).  Ctrl+Enter and
Escape in the panel are not offered: ipywidgets has no key events, and ipyevents listens only
under the mouse and swallows every key (see docs/where-lessons-open.md).
Screenshots: ``SHOTS/keyboard-<frontend>-*.png``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .jupyterlab_page import CELLS, PANEL, SHOTS, run_all_cells, wait_all_executed, wait_kernel_ready, write_notebook
from .test_panel_browser import panel_ollama  # noqa: F401 - the fixture

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")

OUTPUTS = """\
import math
from IPython.display import display
from ollama_magic.display.logprobs import TokenProbabilities
from ollama_magic.batch.comparison import ComparisonView, Event
from ollama_magic.engine.result import GenerationResult
from ollama_magic.batch.view import BatchTable
from ollama_magic.batch.results import BatchResults

def entry(token, p, *alternatives):
    return {"token": token, "logprob": math.log(p), "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": math.log(q), "bytes": list(t.encode())} for t, q in alternatives]}

display(TokenProbabilities([entry("Sure", 0.9, ("Sure", 0.9), ("Yes", 0.05)), entry(" thing", 0.4, ("thing", 0.5))]))
view = ComparisonView(["alpha", "beta"])
for m in ("alpha", "beta"):
    view.apply(Event("done", m, result=GenerationResult(text=f"Hello from {m}", model=m)))
display(view)
display(BatchTable(BatchResults([GenerationResult(text="positive", model="tiny")]), ["Great!"]))
"""

_KERNEL_READY_NB7 = """
(panel) => {
  const p = document.querySelector(panel);
  const name = (p?.querySelector('.jp-Toolbar-kernelName')?.innerText || '').trim();
  const status = p?.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  return !!name && name !== 'No Kernel' && status === 'idle';
}
"""


def open_in(page: Any, frontend: str, server: Any, name: str) -> None:
    """Open a notebook in JupyterLab or Notebook 7 and wait for its kernel."""
    if frontend == "lab":
        page.goto(server.notebook_url(name))
        wait_kernel_ready(page)
    else:
        page.goto(f"{server.url}/notebooks/{name}?token={server.token}")
        page.wait_for_selector(CELLS, timeout=60_000)
        page.wait_for_function(_KERNEL_READY_NB7, arg=PANEL, timeout=60_000, polling=100)


def focused(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return {tag: e.tagName, text: (e.innerText || '').trim(), label: e.labels?.[0]?.innerText || '',"
            " outline: s.outlineStyle !== 'none' ? parseFloat(s.outlineWidth) : 0,"
            " shadow: s.boxShadow !== 'none', visible: e.matches(':focus-visible')}; }"
        )
    )


@pytest.mark.parametrize("frontend", ["lab", "notebook7"])
def test_keyboard_and_screen_reader(
    request: pytest.FixtureRequest,
    page: Any,
    frontend: str,
    panel_ollama: str,  # noqa: F811
) -> None:
    server = request.getfixturevalue("lab" if frontend == "lab" else "notebook7")
    name = f"keyboard-{frontend}.ipynb"
    write_notebook(
        server.root / name,
        f"%load_ext ollama_magic\n%config GenerateMagics.host = {panel_ollama!r}",
        "%ollama ui",
        OUTPUTS,
    )
    open_in(page, frontend, server, name)
    run_all_cells(page)
    wait_all_executed(page)
    panel = page.locator(f"{CELLS} .ollama-magic-panel")
    panel.wait_for(state="visible", timeout=30_000)

    # What a screen reader is given: a name for every control.
    tree = panel.aria_snapshot()
    for role, name in [
        ("combobox", "Model"),
        ("textbox", "Prompt"),
        ("textbox", "Thread"),
        ("textbox", "System"),
        ("spinbutton", "Temperature"),
        ("spinbutton", "Max tokens"),
        ("checkbox", "JSON output"),
    ]:
        assert f'{role} "{name}"' in tree, tree
    for name in ("Generate", "Stop", "New conversation"):  # after the icon's space
        assert panel.get_by_role("button", name=name, exact=False).count() == 1, tree
    assert "- slider\n" not in tree + "\n", tree  # no control without a name

    # Tab order: model -> prompt -> Generate, focus visible on each.
    panel.get_by_role("combobox", name="Model").focus()
    page.keyboard.press("Tab")
    now = focused(page)
    assert now["tag"] == "TEXTAREA" and now["label"] == "Prompt", now
    page.keyboard.type("Why is the sky blue?")
    page.keyboard.press("Tab")
    now = focused(page)
    assert now["tag"] == "BUTTON" and now["text"] == "Generate", now
    assert now["visible"] and now["outline"] >= 2, now  # a focus ring one sees (not ipywidgets' 1 px)
    SHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(SHOTS / f"keyboard-{frontend}-focus.png"))
    page.keyboard.press("Enter")
    panel.locator(".ollama-panel-footer:has-text('tiny · 40 tokens')").wait_for(timeout=30_000)
    assert "Rayleigh scattering" in panel.locator(".ollama-panel-answer").inner_text()
    # Told once, politely, when the answer is whole (the answer itself is not a live region).
    status = panel.get_by_role("status").filter(has_text="Answer complete")
    assert status.count() == 1 and status.get_attribute("aria-live") == "polite"
    assert panel.locator(".ollama-panel-answer").get_attribute("aria-live") == "off"
    assert panel.locator(".ollama-panel-answer").get_attribute("aria-busy") == "false"
    panel.screenshot(path=str(SHOTS / f"keyboard-{frontend}-answered.png"))

    # The probability view: Tab reaches each token, Enter opens its alternatives.
    outputs = page.locator(CELLS).nth(2)
    tokens = outputs.locator(".ollama-magic-token summary")
    tokens.first.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.innerText") == " thing"
    page.keyboard.press("Enter")
    opened = outputs.locator(".ollama-magic-token[open]")
    assert opened.count() == 1 and "thing" in opened.inner_text()
    assert focused(page)["visible"]
    # A comparison's columns are headed, a batch table's columns have headers.
    tree = outputs.aria_snapshot()
    assert 'heading "alpha" [level=3]' in tree and 'heading "beta" [level=3]' in tree, tree
    for header in ("#", "prompt", "answer", "time", "status"):
        assert f'columnheader "{header}"' in tree, tree
    outputs.screenshot(path=str(SHOTS / f"keyboard-{frontend}-outputs.png"))
