"""Driving JupyterLab 4 the way a person does: open a notebook, Run > Run All Cells, look.

Selectors are JupyterLab's own classes (``.jp-NotebookPanel``, ``.jp-Cell``,
``.jp-OutputArea-output``, ``.jp-Notebook-ExecutionIndicator``...).  Every wait is on a
condition in the page, with a generous deadline, never a fixed sleep.

``page`` arguments are Playwright sync ``Page`` objects; Playwright is imported only by
the fixtures, so this module imports without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import nbformat

SHOTS = Path(os.environ.get("OLLAMA_BROWSER_SHOTS", "/tmp/browser-shots"))

#: Debian's Chromium (never a browser Playwright downloads), and how it is launched.
CHROMIUM = os.environ.get("OLLAMA_BROWSER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CELLS = f"{PANEL} .jp-Notebook .jp-Cell"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# The notebook's kernel is really there: JupyterLab shows "idle" in the toolbar's execution
# indicator before any kernel exists ("No Kernel"), so the kernel name must be known too, and
# the status bar must no longer say it is starting or connecting.  Running cells earlier is
# silently ignored by JupyterLab (the cells stay "[ ]").
_KERNEL_READY = """
(panel) => {
  const p = document.querySelector(panel);
  if (!p) return false;
  const name = (p.querySelector('.jp-Toolbar-kernelName')?.innerText || '').trim();
  const status = p.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  const bar = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(e => e.innerText).join(' ');
  return !!name && name !== 'No Kernel' && status === 'idle' && / \\| Idle/.test(bar);
}
"""

# Samples the text of one cell's output area every 20 ms, in the page itself (no round trip
# per sample), until the statistics footer appears: what a person watching would see.
_START_SAMPLING = """
([cells, index]) => {
  const samples = [];
  const started = performance.now();
  window.__ollamaSamples = samples;
  const tick = () => {
    const cell = document.querySelectorAll(cells)[index];
    const out = cell ? cell.querySelector('.jp-OutputArea') : null;
    // The waiting line before the first token is not the answer: it counts as nothing yet.
    const text = out && !out.querySelector('.ollama-magic-waiting') ? out.innerText.trim() : '';
    const done = !!(out && out.querySelector('.ollama-magic-footer'));
    samples.push({t: Math.round(performance.now() - started), length: text.length, done});
    if (!done && performance.now() - started < 120000) setTimeout(tick, 20);
  };
  tick();
}
"""

# Records any element that could run code or load something, should one ever be added
# inside an output area (also while the answer streams, not only at the end).
_WATCH_ELEMENTS = """
([cells, index]) => {
  window.__ollamaDangerous = [];
  new MutationObserver(records => {
    const target = document.querySelectorAll(cells)[index];
    for (const r of records) for (const node of r.addedNodes) {
      if (node.nodeType !== 1) continue;
      for (const el of [node, ...node.querySelectorAll('*')]) {
        if (target && target.contains(el) && el.closest('.jp-OutputArea-output')
            && /^(SCRIPT|IMG|IFRAME|OBJECT|EMBED|FORM|INPUT|BUTTON)$/i.test(el.tagName)) {
          window.__ollamaDangerous.push(el.outerHTML.slice(0, 300));
        }
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
}
"""


def write_notebook(path: Path, *sources: str) -> Path:
    """A notebook of code cells, with the kernelspec JupyterLab would write itself."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def open_notebook(page: Any, url: str, timeout_ms: int = 60_000) -> None:
    """Open a notebook and wait until its kernel is started, connected and idle."""
    page.goto(url)
    wait_kernel_ready(page, timeout_ms)


def wait_kernel_ready(page: Any, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector(f"{CELLS}", timeout=timeout_ms)
    page.wait_for_function(_KERNEL_READY, arg=PANEL, timeout=timeout_ms, polling=100)


def run_all_cells(page: Any, timeout_ms: int = 15_000) -> None:
    """Run > Run All Cells from the menu bar, and check that the first cell did start."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    page.wait_for_function(
        "(cells) => { const p = document.querySelector(cells)?.querySelector('.jp-InputPrompt');"
        " return !!p && p.innerText.trim() !== '[ ]:'; }",
        arg=CELLS,
        timeout=timeout_ms,
    )


def cell(page: Any, index: int) -> Any:
    return page.locator(CELLS).nth(index)


def output(page: Any, index: int) -> Any:
    """The (first) output of cell ``index``."""
    return cell(page, index).locator(".jp-OutputArea-output").first


def wait_footer(page: Any, index: int, timeout_ms: int = 90_000) -> Any:
    """Wait for the statistics footer under cell ``index``'s answer; return the footer."""
    footer = cell(page, index).locator(".jp-OutputArea-output .ollama-magic-footer")
    footer.wait_for(state="visible", timeout=timeout_ms)
    return footer


def wait_all_executed(page: Any, timeout_ms: int = 90_000) -> None:
    """Every cell has an execution count and the kernel is idle again."""
    page.wait_for_function(
        "([cells, panel]) => [...document.querySelectorAll(cells)].every("
        " c => /^\\[\\d+\\]:$/.test((c.querySelector('.jp-InputPrompt')?.innerText || '').trim()))"
        " && document.querySelector(panel + ' .jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'",
        arg=[CELLS, PANEL],
        timeout=timeout_ms,
        polling=100,
    )


def start_sampling(page: Any, index: int) -> None:
    page.evaluate(_START_SAMPLING, [CELLS, index])


def samples(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("() => window.__ollamaSamples || []"))


def watch_dangerous_elements(page: Any, index: int) -> None:
    """From now on, note any script, image, frame or form added to cell ``index``'s output."""
    page.evaluate(_WATCH_ELEMENTS, [CELLS, index])


def dangerous_elements(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__ollamaDangerous || []"))


def save(page: Any, timeout_ms: int = 15_000) -> None:
    """Ctrl+S in the notebook, then wait until its tab no longer shows unsaved changes."""
    cell(page, 0).locator(".jp-InputPrompt").click()  # command mode, focus in the notebook
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => { const t = document.querySelector('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current');"
        " return !!t && !t.classList.contains('jp-mod-dirty'); }",
        timeout=timeout_ms,
    )


def wait_file(path: Path, predicate: Any, timeout: float = 10.0) -> Any:
    """Read a notebook from disk until ``predicate(nb)`` holds (the save is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            nb = nbformat.read(path, as_version=4)
            if predicate(nb):
                return nb
        except Exception:  # half-written file: read again
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return nbformat.read(path, as_version=4)
        time.sleep(0.1)
