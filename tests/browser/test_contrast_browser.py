"""Every text the package draws is readable in JupyterLab Light and Dark: contrast >= 4.5:1 (WCAG AA).

One notebook draws each kind of output through the package's own classes (no server
needed): an answer with its footer, notes and schema errors, thinking, the waiting line, a
note, the probability view at its strongest shades (and a token's alternatives opened), a
comparison's columns and summary, a batch's bar and table, a pull's bar (done and failed),
and the panel with a finished, a stopped and a failed turn.  In the page, each visible
element with text gets its actual colour (its alpha and every ancestor's opacity applied)
and its actual background (every ancestor's background composited, down to the page's),
and their contrast is computed.  Screenshots: ``SHOTS/contrast-light.png``, ``contrast-dark.png``.

Not counted: the placeholder of an empty input (JupyterLab's own grey) and a disabled button
(WCAG exempts inactive controls).
"""

from __future__ import annotations

from typing import Any

import pytest

from .jupyterlab_page import CELLS, PANEL, SHOTS, open_notebook, run_all_cells, wait_all_executed, write_notebook

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")

SETUP = """\
import math
from IPython.display import display
from ollama_magic.display.render import Answer, waiting_text
from ollama_magic.display.notes import Note
from ollama_magic.display.logprobs import TokenProbabilities
from ollama_magic.batch.comparison import ComparisonView, Event
from ollama_magic.engine.result import GenerationResult, Stats
from ollama_magic.batch.view import BatchProgressBar, BatchTable
from ollama_magic.batch.results import BatchResults, BatchState
from ollama_magic.server.pull import NotebookPullView, PullState
from ollama_magic.widgets.panel import GeneratePanel, Turn

def entry(token, p, *alternatives):
    return {"token": token, "logprob": math.log(p), "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": math.log(q), "bytes": list(t.encode())} for t, q in alternatives]}
"""

CELLS_SOURCES = [
    SETUP,
    'Answer("The **sky** is blue because of `Rayleigh` scattering.\\n\\n- short waves\\n- scatter more",'
    ' footer="tiny · 12 tokens · 80 tok/s", notes=["thread default: branched from an earlier answer"],'
    " errors=[\"n: 'one' is not of type 'integer'\"], status=\"rejected: the answer does not match the schema\")",
    'Answer("", thinking="First I consider the light of the sun.", streaming=True)',
    'Answer("", waiting=waiting_text("tiny", 3), status="server busy: retry 1 of 6 in 0.5 s")',
    'Note("This server returned no token probabilities: they need Ollama 0.12.11 or newer.")',
    'TokenProbabilities([entry("Sure", 0.999, ("Sure", 0.999)),'
    ' entry(" maybe", 0.001, ("yes", 0.6), (" maybe", 0.001)), entry(" half", 0.5, (" half", 0.5))], model="tiny")',
    'view = ComparisonView(["alpha", "beta"], footer=lambda m, r: f"{m} · 3 tokens")\n'
    'for m in ("alpha", "beta"):\n'
    '    view.apply(Event("chunk", m, piece=f"Hello from {m}"))\n'
    '    view.apply(Event("done", m, result=GenerationResult(text=f"Hello from {m}", model=m, stats=Stats())))\n'
    "view",
    'display(BatchProgressBar(BatchState(total=4, done=2), note="2 from the cache"))\n'
    "display(BatchProgressBar(BatchState(total=4, done=4, failed=1)))\n"
    'BatchTable(BatchResults([GenerationResult(text="positive", model="tiny"),'
    ' GenerationResult(text="", model="tiny", complete=False, error="timed out")]), ["Great!", "Broke."])',
    "done = NotebookPullView(display)\n"
    'done.finish(PullState("tiny", status="success", done=True), "pulled tiny")\n'
    "failed = NotebookPullView(display)\n"
    'failed.finish(PullState("tiny", status="pulling manifest", outcome="failed"), None)',
    'panel = GeneratePanel(models=["tiny"], host="127.0.0.1:9")\n'
    'panel.prompt.value = "Why is the sky blue?"\n'
    'panel.history.value = Turn("Why is the sky blue?", Answer("Rayleigh scattering.").html(),'
    ' "tiny · 3 tokens").html() + Turn("Go on", Answer("Half an").html(),'
    ' "Stopped — the partial answer is kept; the conversation is unchanged.").html()\n'
    'panel.output.value = Turn("Fail", "", "Failed — the conversation is unchanged.", error=True).html()\n'
    'panel._say("Ollama reported an error: model runner crashed", error=True)\n'
    "panel",
]

# The contrast of each visible text in the notebook's outputs, from computed colours.
_CONTRASTS = """
(cells) => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || '');
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const chain = (el) => { const out = []; for (let e = el; e; e = e.parentElement) out.unshift(e); return out; };
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const results = [];
  const outputs = [...document.querySelectorAll(cells + ' .jp-OutputArea-output')];
  for (const out of outputs) {
    for (const el of [out, ...out.querySelectorAll('*')]) {
      const style = getComputedStyle(el);
      const own = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
      const field = (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') ? el.value.trim() : '';
      const text = own || field;
      if (!text) continue;
      const box = el.getBoundingClientRect();
      if (box.width <= 1 || box.height <= 1 || style.visibility === 'hidden' || !el.getClientRects().length) continue;
      if (el.closest('button:disabled, [hidden], details:not([open]) > :not(summary)')) continue;
      if (el.closest('.ollama-magic-panel-reopened')) continue;  // hidden in a live notebook
      let bg = [255, 255, 255, 1];
      let opacity = 1;
      for (const e of chain(el)) {
        const s = getComputedStyle(e);
        const c = parse(s.backgroundColor);
        if (c && c[3] > 0) bg = over(c, bg);
        opacity *= parseFloat(s.opacity);
      }
      const fg = parse(style.color);
      const shown = over([...over(fg, bg).slice(0, 3), opacity], bg);
      const [a, b] = [lum(shown), lum(bg)];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      results.push({text: text.slice(0, 60), ratio: Math.round(ratio * 100) / 100, tag: el.tagName,
                    cls: (el.className && el.className.baseVal === undefined ? el.className : '').slice(0, 60),
                    color: style.color, background: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')', opacity});
    }
  }
  return results;
}
"""

WANTED = [
    "Rayleigh",  # answer
    "tiny · 12 tokens",  # footer
    "branched from an earlier answer",  # a footer's note
    "is not of type",  # schema errors
    "rejected: the answer",  # status
    "First I consider",  # thinking
    "Waiting for tiny",  # waiting line
    "no token probabilities",  # a note
    "Sure",  # probability view, strongest green
    "maybe",  # strongest red
    "alpha",  # comparison header
    "Hello from beta",  # comparison column
    "2 / 4",  # batch bar
    "positive",  # batch table
    "done",  # pull bar
    "Why is the sky blue?",  # panel
    "Stopped — the partial answer",  # panel stopped
    "Failed — the conversation",  # panel failed
    "model runner crashed",  # panel error line
]


def set_theme(page: Any, name: str) -> None:
    page.click(".lm-MenuBar-itemLabel:text-is('Settings')")
    page.click(".lm-Menu-itemLabel:text-is('Theme')")
    page.click(f".lm-Menu-itemLabel:text-is('{name}')")
    light = "true" if "Light" in name else "false"
    # The attribute changes first; the theme's stylesheet applies after it: wait for its colours.
    dark = "false" if light == "true" else "true"
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeLight === '{light}' && "
        "(() => { const c = getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor;"
        f" const v = (c.match(/\\d+/g) || [255]).map(Number); return (v[0] < 128) === {dark}; }})()",
        timeout=30_000,
    )


def contrasts(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate(_CONTRASTS, CELLS))


def check(page: Any, theme: str) -> None:
    found = contrasts(page)
    texts = " | ".join(r["text"] for r in found)
    missing = [w for w in WANTED if w not in texts]
    assert not missing, f"not drawn in {theme}: {missing}"
    low = [r for r in found if r["ratio"] < 4.5]
    assert not low, f"contrast below 4.5:1 in {theme}:\n" + "\n".join(map(str, low))


def test_every_text_the_package_draws_has_contrast_in_light_and_dark(page: Any, lab: Any) -> None:
    page.set_viewport_size({"width": 1100, "height": 3000})  # the whole notebook in one screenshot
    write_notebook(lab.root / "contrast.ipynb", *CELLS_SOURCES)
    open_notebook(page, lab.notebook_url("contrast.ipynb"))
    run_all_cells(page)
    wait_all_executed(page)
    page.locator(f"{CELLS} .ollama-magic-panel").wait_for(state="visible")
    # A token's alternatives, opened as a click (or Enter) opens them.
    page.locator(f"{CELLS} .ollama-magic-token summary").nth(1).click()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        check(page, "JupyterLab Light")
        page.locator(PANEL).screenshot(path=str(SHOTS / "contrast-light.png"))
        set_theme(page, "JupyterLab Dark")
        page.locator(f"{CELLS} .ollama-magic-token summary").nth(1).scroll_into_view_if_needed()
        check(page, "JupyterLab Dark")
        page.locator(PANEL).screenshot(path=str(SHOTS / "contrast-dark.png"))
    finally:
        if page.evaluate("() => document.body.dataset.jpThemeLight") == "false":
            set_theme(page, "JupyterLab Light")  # the theme is a server setting: later tests get Light
