"""What a person sees in JupyterLab: a real JupyterLab, a real kernel, headless Chromium.

- the answer visibly streams into the cell, then the small grey statistics footer;
- HTML or ``javascript:`` links in an answer are shown as text and never run, in a page
  where the same HTML from ordinary Python output *does* run (the control);
- the answer is saved in the .ipynb and shown again after a reload, and in a notebook
  someone else saved (untrusted, so sanitized) the answer and footer are still shown;
- ``--format json`` shows pretty JSON.

Screenshots go to /tmp/browser-shots/ (``OLLAMA_BROWSER_SHOTS``), to look at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from ..conftest import LONG, SHORT
from .jupyterlab_page import (
    SHOTS,
    cell,
    dangerous_elements,
    open_notebook,
    output,
    run_all_cells,
    samples,
    save,
    start_sampling,
    wait_all_executed,
    wait_file,
    wait_footer,
    watch_dangerous_elements,
    write_notebook,
)

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")

LOAD = "%load_ext ollama_magic"


def shot(page: Any, name: str, locator: Any = None) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    if locator is not None:
        locator.screenshot(path=str(SHOTS / f"{name}-cell.png"))


def style(locator: Any, prop: str) -> str:
    return str(locator.evaluate(f"(el) => getComputedStyle(el).{prop}"))


def pixels(value: str) -> float:
    return float(value.removesuffix("px"))


def looks_secondary(footer: Any, body: Any) -> bool:
    """The footer is smaller than the answer, and greyer (another colour, or faded)."""
    smaller = pixels(style(footer, "fontSize")) < pixels(style(body, "fontSize"))
    greyer = style(footer, "color") != style(body, "color") or float(style(footer, "opacity")) < 1
    return smaller and greyer


# -- a: streaming is visible ------------------------------------------------------------

# One CPU thread for the model: on a small machine (2 vCPUs), Ollama's default threads
# spin-wait against Chromium and the kernel, and tiny-long's speed swings from ~300 to ~7
# tokens/s (400 tokens: 1 s to 55 s).  With one thread it is a steady ~3000 tokens/s, so
# 2000 tokens stream for about a second: some twenty display updates, in a second or two.
STREAM_TOKENS = 2000
STREAMING_CELL = f"%%generate -m {LONG} --num-predict {STREAM_TOKENS} --options '{{\"num_thread\": 1}}'\nGo"


def test_answer_streams_into_the_cell_then_the_footer(page: Any, lab: Any, real_host: str) -> None:
    write_notebook(lab.root / "streaming.ipynb", LOAD, STREAMING_CELL)
    open_notebook(page, lab.notebook_url("streaming.ipynb"))
    start_sampling(page, 1)
    run_all_cells(page)
    # A picture of the answer half-way, if the screenshot is quick enough to catch it.
    page.wait_for_function(
        "() => (window.__ollamaSamples || []).some(s => s.length > 200 || s.done)", timeout=60_000, polling=20
    )
    if not samples(page)[-1]["done"]:
        shot(page, "a-streaming-midway")

    footer = wait_footer(page, 1)
    answer = output(page, 1)
    seen = samples(page)
    during = [s["length"] for s in seen if not s["done"] and s["length"] > 0]
    final_text = answer.inner_text().strip()
    distinct = sorted(set(during))
    assert len(distinct) >= 2, f"the answer did not visibly grow while streaming: {seen[:5]}...{seen[-5:]}"
    assert during == sorted(during), f"the visible answer shrank while streaming: {during}"
    assert max(during) < len(final_text)

    body = answer.locator(".ollama-magic > p").first
    assert "Hey now!" in body.inner_text()
    footer_text = footer.inner_text()
    for word in (LONG, f"{STREAM_TOKENS} tokens", "tok/s", "length"):
        assert word in footer_text, f"{word!r} missing from the footer {footer_text!r}"
    assert looks_secondary(footer, body), "the footer should look small and grey under the answer"
    shot(page, "a-streaming-final", cell(page, 1))
    print(
        f"streaming: {len(distinct)} distinct lengths before the footer, first {distinct[:3]}, final {len(final_text)}"
    )


# -- b: untrusted output does not run ---------------------------------------------------

HOSTILE = [
    "Here is an image: <img src=x on",
    'error="window.__pwned=1"> and a script: <scr',
    "ipt>window.__pwned=2</script> and a ",
    "[click](javascript:window.__pwned=3) ",
    "[and a normal link](https://example.org/).",
]


@pytest.fixture
def hostile_ollama(fake_ollama: Any) -> str:
    """A fake Ollama whose answer is HTML and a javascript: link, streamed in pieces."""
    from werkzeug.wrappers import Response

    def respond(request: Any) -> Response:
        body = json.loads(request.data or b"{}")

        def lines() -> Iterator[bytes]:
            for piece in HOSTILE:
                time.sleep(0.15)  # slow enough for several live updates of the display
                obj = {"model": body.get("model"), "created_at": "2026-11-26T12:00:00Z", "response": piece}
                yield (json.dumps({**obj, "done": False}) + "\n").encode()
            done = {
                "model": body.get("model"),
                "created_at": "2026-11-26T12:00:01Z",
                "response": "",
                "done": True,
                "done_reason": "stop",
                "context": [1, 2, 3],
                "total_duration": 900_000_000,
                "load_duration": 10_000_000,
                "prompt_eval_count": 5,
                "prompt_eval_duration": 20_000_000,
                "eval_count": len(HOSTILE),
                "eval_duration": 750_000_000,
            }
            yield (json.dumps(done) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    fake_ollama.expect_request("/api/generate", method="POST").respond_with_handler(respond)
    return f"127.0.0.1:{fake_ollama.port}"


def test_html_and_javascript_links_in_an_answer_never_run(page: Any, lab: Any, hostile_ollama: str) -> None:
    control = "from IPython.display import HTML\nHTML('<img src=x onerror=\"window.__control=1\">')"
    write_notebook(
        lab.root / "hostile.ipynb", LOAD, control, f"%%generate -m evil --host {hostile_ollama} --no-context\nhi"
    )
    open_notebook(page, lab.notebook_url("hostile.ipynb"))
    watch_dangerous_elements(page, 2)
    run_all_cells(page)
    footer = wait_footer(page, 2)
    wait_all_executed(page)

    # The control: the same HTML from ordinary Python output does run in this page, so the
    # checks below would notice an answer that did.
    page.wait_for_function("() => window.__control === 1", timeout=10_000)

    answer = output(page, 2)
    text = answer.inner_text()
    assert page.evaluate("() => window.__pwned") is None
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert "<script>window.__pwned=2</script>" in text
    assert answer.locator("script, img, iframe, object, embed").count() == 0
    assert dangerous_elements(page) == [], "an element that can run code appeared while the answer streamed"
    hrefs = answer.locator("a").evaluate_all("(links) => links.map(a => a.getAttribute('href') || '')")
    assert all(not h.strip().lower().startswith("javascript:") for h in hrefs), hrefs
    assert "https://example.org/" in hrefs  # ordinary Markdown links still work
    assert "[click](javascript:window.__pwned=3)" in text  # refused as a link, so shown as typed
    assert "evil" in footer.inner_text()
    shot(page, "b-hostile", cell(page, 2))


# -- c: the output is saved --------------------------------------------------------------


def test_answer_is_saved_in_the_notebook_and_shown_after_reload(page: Any, lab: Any, real_host: str) -> None:
    path = write_notebook(lab.root / "saved.ipynb", LOAD, f"%%generate -m {SHORT}\nhi")
    open_notebook(page, lab.notebook_url("saved.ipynb"))
    run_all_cells(page)
    wait_footer(page, 1)
    wait_all_executed(page)
    save(page)

    def has_answer(nb: Any) -> bool:
        return any(o.get("output_type") == "display_data" for o in nb.cells[1].get("outputs", []))

    nb = wait_file(path, has_answer)
    outputs = [o for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert len(outputs) == 1, nb.cells[1].outputs  # one display, updated in place, not one per chunk
    data = outputs[0].data
    assert "Hey now!" in data["text/html"] and "Hey now!" in data["text/plain"]
    for mime in ("text/html", "text/plain"):
        assert SHORT in data[mime] and "tokens" in data[mime] and "tok/s" in data[mime], data[mime]
    assert "ollama-magic-footer" in data["text/html"]
    assert "text/markdown" not in data  # nothing a frontend could render with raw HTML on
    assert nb.cells[1].execution_count is not None

    page.reload()
    answer = output(page, 1)
    answer.wait_for(state="visible", timeout=60_000)
    assert "Hey now!" in answer.inner_text()
    footer = wait_footer(page, 1, timeout_ms=30_000)
    assert SHORT in footer.inner_text() and "tok/s" in footer.inner_text()
    assert looks_secondary(footer, answer.locator(".ollama-magic > p").first)  # saved by us: trusted, styled
    shot(page, "c-after-reload", cell(page, 1))


# -- e: a notebook someone else saved ---------------------------------------------------


def test_shared_untrusted_notebook_still_shows_answer_and_footer(page: Any, lab: Any) -> None:
    """A notebook someone else saved is untrusted here: its HTML outputs are sanitized."""
    from ollama_magic.render import Answer

    footer_line = f"{SHORT} · 9 tokens · 31.0 tok/s · prompt 4 tokens · total 319 ms · load 24 ms · stop"
    bundle = Answer("Hey now!", footer=footer_line)._repr_mimebundle_()
    path = write_notebook(lab.root / "shared.ipynb", f"%%generate -m {SHORT}\nhi")
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, path)  # not signed: JupyterLab treats it as untrusted

    page.goto(lab.notebook_url("shared.ipynb"))
    answer = output(page, 0)
    answer.wait_for(state="visible", timeout=60_000)
    assert "jp-mod-trusted" not in str(answer.get_attribute("class")).split()
    body = answer.locator(".ollama-magic > p").first
    footer = answer.locator(".ollama-magic-footer")
    assert body.inner_text() == "Hey now!"
    assert footer.inner_text() == footer_line
    shot(page, "e-untrusted", cell(page, 0))
    # the footer's look survives JupyterLab's sanitizer (inline styles, no <style> element)
    assert looks_secondary(footer, body)


# -- d: structured output -----------------------------------------------------------------


def test_format_json_shows_pretty_json(page: Any, lab: Any, real_host: str) -> None:
    write_notebook(lab.root / "json.ipynb", LOAD, f"%%generate -m {SHORT} --format json\nhi")
    open_notebook(page, lab.notebook_url("json.ipynb"))
    run_all_cells(page)
    wait_all_executed(page)
    answer = output(page, 1)
    answer.wait_for(state="visible", timeout=30_000)
    shot(page, "d-json", cell(page, 1))
    assert "{}" in answer.inner_text().replace(" ", "")  # the answer is shown, in some form
    assert cell(page, 1).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0

    classes = str(answer.get_attribute("class")).split()
    assert "jp-RenderedHTML" in classes, classes  # the JSON viewer must not hide the answer and footer
    code = answer.locator("pre code")
    assert code.count() == 1, answer.inner_html()
    assert code.inner_text().strip() == "{}"
    assert "schema check failed" not in answer.inner_text().lower()
    footer = answer.locator(".ollama-magic-footer")
    assert footer.is_visible() and SHORT in footer.inner_text()
    assert looks_secondary(footer, code)
    tree = cell(page, 1).locator(".jp-OutputArea-output.jp-RenderedJSON")
    assert tree.count() == 1  # the parsed answer as a collapsible tree, below the answer
