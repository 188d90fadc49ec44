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
    CELLS,
    PANEL,
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


def wait_kernel_idle(page: Any, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        "(panel) => document.querySelector(panel + ' .jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'",
        arg=PANEL,
        timeout=timeout_ms,
        polling=100,
    )


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
    for word in (LONG, f"{STREAM_TOKENS} tokens", "tok/s", f"cut at --num-predict {STREAM_TOKENS}"):
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
    from ollama_magic.display.render import Answer

    footer_line = f"{SHORT} · 9 tokens · 31.0 tok/s · prompt 4 tokens · total 319 ms · load 24 ms"
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
    # The data once, then the footer: no second copy (a JSON tree) under the footer.
    assert cell(page, 1).locator(".jp-OutputArea-output.jp-RenderedJSON").count() == 0
    assert cell(page, 1).locator(".jp-OutputArea-output").count() == 1


# -- f: waiting, the cursor, the footer's words, interrupts ---------------------------------


def interrupt_kernel(page: Any) -> None:
    """Kernel > Interrupt Kernel, as a person would."""
    page.click(".lm-MenuBar-itemLabel:text-is('Kernel')")
    page.click(".lm-Menu-itemLabel:text-is('Interrupt Kernel')")


def error_output(page: Any, index: int) -> Any:
    return cell(page, index).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")


@pytest.fixture
def slow_ollama(fake_ollama: Any) -> str:
    """A fake Ollama: ``slow`` says nothing for 2.6 s (a model loading), then streams six
    words slowly and stops at its num_predict; ``sleepy`` says nothing for 20 s; any other
    model answers at once."""
    from werkzeug.wrappers import Response

    def respond(request: Any) -> Response:
        body = json.loads(request.data or b"{}")
        model = body.get("model")

        def line(obj: dict[str, Any]) -> bytes:
            return (json.dumps({"model": model, "created_at": "2026-11-26T12:00:00Z", **obj}) + "\n").encode()

        def lines() -> Iterator[bytes]:
            words = ["Hey", " now,", " this", " answer", " streams", " slowly."] if model == "slow" else ["Hey now!"]
            if model == "sleepy":
                for _ in range(200):
                    time.sleep(0.1)
            if model == "slow":
                time.sleep(2.6)
            for word in words:
                yield line({"response": word, "done": False})
                if model == "slow":
                    time.sleep(0.35)
            reason = "length" if model == "slow" else "stop"
            stats = {"total_duration": 4_000_000_000, "load_duration": 2_500_000_000, "prompt_eval_count": 5}
            stats.update(prompt_eval_duration=20_000_000, eval_count=len(words), eval_duration=900_000_000)
            yield line({"response": "", "done": True, "done_reason": reason, "context": [1, 2, 3], **stats})

        return Response(lines(), mimetype="application/x-ndjson")

    fake_ollama.expect_request("/api/generate", method="POST").respond_with_handler(respond)
    return f"127.0.0.1:{fake_ollama.port}"


def test_waiting_line_then_answer_with_cursor_then_footer_and_note(page: Any, lab: Any, slow_ollama: str) -> None:
    write_notebook(
        lab.root / "waiting.ipynb",
        LOAD,
        f"%%generate -m slow --host {slow_ollama} --num-predict 6\nhi",
        f"%%generate -m other --conversation context --host {slow_ollama}\nhi again",
    )
    open_notebook(page, lab.notebook_url("waiting.ipynb"))
    run_all_cells(page)
    waiting = cell(page, 1).locator(".ollama-magic-waiting")
    waiting.wait_for(state="visible", timeout=30_000)
    assert waiting.inner_text().startswith("Waiting for slow (loading it if needed)… ")
    # The seconds count up while the kernel is blocked reading the socket.
    page.wait_for_function(
        "(cells) => /… [1-9]\\d* s$/.test(document.querySelectorAll(cells)[1]"
        "?.querySelector('.ollama-magic-waiting')?.innerText || '')",
        arg=CELLS,
        timeout=30_000,
    )
    shot(page, "f-waiting", cell(page, 1))

    cursor = cell(page, 1).locator(".ollama-magic-cursor")
    cursor.wait_for(state="visible", timeout=30_000)
    assert waiting.count() == 0  # the answer replaced the waiting line
    shot(page, "f-cursor", cell(page, 1))
    box = cursor.bounding_box()
    paragraph = cell(page, 1).locator(".ollama-magic > p").last.bounding_box()
    assert box is not None and paragraph is not None
    assert box["width"] >= 3 and box["height"] >= 8  # drawn by CSS: no font can lack it
    assert paragraph["y"] <= box["y"] <= paragraph["y"] + paragraph["height"]  # on the text's line

    footer = wait_footer(page, 1)
    assert cursor.count() == 0 and waiting.count() == 0  # neither is in the final output
    assert "cut at --num-predict 6" in footer.inner_text() and "length" not in footer.inner_text()
    second = wait_footer(page, 2)
    note = cell(page, 2).locator(".ollama-magic-note")
    assert note.inner_text() == "new conversation: the context of slow cannot continue with other"
    assert "new conversation" not in second.inner_text()
    footer_box, note_box = second.bounding_box(), note.bounding_box()
    assert footer_box is not None and note_box is not None
    assert note_box["y"] >= footer_box["y"] + footer_box["height"] - 1  # a line of its own, under the footer
    assert footer_box["height"] < 1.6 * note_box["height"]  # the footer did not wrap
    shot(page, "f-footer-and-note", cell(page, 2))


def test_interrupt_before_the_answer_began_is_one_calm_line_and_run_all_stops(
    page: Any, lab: Any, slow_ollama: str
) -> None:
    write_notebook(lab.root / "sleepy.ipynb", LOAD, f"%%generate -m sleepy --host {slow_ollama}\nhi", "print('after')")
    open_notebook(page, lab.notebook_url("sleepy.ipynb"))
    run_all_cells(page)
    cell(page, 1).locator(".ollama-magic-waiting").wait_for(state="visible", timeout=30_000)
    interrupt_kernel(page)
    error = error_output(page, 1)
    error.wait_for(state="visible", timeout=30_000)
    wait_kernel_idle(page)
    shot(page, "f-interrupted-before-text", cell(page, 1))
    text = cell(page, 1).locator(".jp-OutputArea").inner_text()
    assert error.inner_text().strip() == "Interrupted before the answer began; the conversation is unchanged."
    assert "Waiting" not in text and "kept" not in text and "GenerationInterrupted" not in text
    assert text.count("nterrupted") == 1  # one message
    assert cell(page, 2).locator(".jp-OutputArea-output").count() == 0  # Run All stopped at the failed cell


def test_interrupt_mid_answer_keeps_it_with_one_calm_line(page: Any, lab: Any, real_host: str) -> None:
    source = f"%%generate -m {LONG} --num-predict 100000 --options '{{\"num_thread\": 1}}'\nGo"
    write_notebook(lab.root / "interrupt.ipynb", LOAD, source, "print('after')")
    open_notebook(page, lab.notebook_url("interrupt.ipynb"))
    run_all_cells(page)
    page.wait_for_function(
        "(cells) => (document.querySelectorAll(cells)[1]?.querySelector('.ollama-magic')?.innerText || '')"
        ".length > 300",
        arg=CELLS,
        timeout=60_000,
    )
    interrupt_kernel(page)
    error = error_output(page, 1)
    error.wait_for(state="visible", timeout=30_000)
    wait_kernel_idle(page)
    shot(page, "f-interrupted-mid-answer", cell(page, 1))
    assert error.inner_text().strip() == "Interrupted: the answer so far is kept; the conversation is unchanged."
    answer = output(page, 1)
    assert "Hey now! Hey now!" in answer.inner_text()  # what had arrived
    text = cell(page, 1).locator(".jp-OutputArea").inner_text()
    assert text.count("nterrupted") == 1 and "GenerationInterrupted" not in text and "⏹" not in text
    assert answer.locator(".ollama-magic-cursor").count() == 0
    assert cell(page, 2).locator(".jp-OutputArea-output").count() == 0  # Run All stopped at the failed cell
