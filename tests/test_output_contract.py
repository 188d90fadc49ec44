"""What every output bundle of the package may hold, and which outputs are notes, not errors.

- A note (a request that worked, with something worth knowing: "this server returned no
  token probabilities", a schema keyword Ollama will not enforce) is an output of its own
  in a notebook, drawn calmly (``role="note"``, the text's own colour): never stderr,
  which JupyterLab, Notebook 7, Voilà and VS Code paint red as an error.  In a terminal
  it stays one line on stderr (stdout keeps the answer alone).
- A failure is still an error (the cell fails, "Run All" stops).
- VS Code and Colab render only what is in the bundle: HTML with inline styles, no
  script, no external CSS/JS/images, and ``text/plain`` beside every ``text/html``.
  Checked on every bundle the package emits here: an answer streaming and final, a
  footer, a note, the probability view, a comparison, a batch table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from ollama_magic import OllamaMagicError

from .conftest import FakeOllama, chunk, final, notebook_like, run
from .echo_server import serve
from .test_comparison import ModelFake, multi  # noqa: F401 - the fixture
from .test_newest_fields import entry

NO_PROBABILITIES = "Note: This server returned no token probabilities: they need Ollama 0.12.11 or newer."


def notes(shell: Any) -> list[dict[str, Any]]:
    shown = [m.get("data", {}) for m in shell.publisher.messages]
    return [data for data in shown if "ollama-magic-note-line" in data.get("text/html", "")]


def test_a_note_in_a_notebook_is_a_calm_output_not_stderr(nb: Any, fake: FakeOllama, capsys: Any) -> None:
    capsys.readouterr()
    fake.reply()
    assert run(nb, "%%generate -m tiny --logprobs -o r\nHi").success
    captured = capsys.readouterr()
    assert captured.err == ""
    (note,) = notes(nb)
    assert note["text/plain"] == NO_PROBABILITIES
    assert 'role="note"' in note["text/html"]
    assert "no token probabilities" in note["text/html"]
    assert not re.search(r"color\s*:", note["text/html"])  # the text's own colour: no red, no grey
    assert nb.user_ns["r"].text  # the answer itself is there


def test_schema_notes_in_a_notebook_are_notes_and_the_request_is_sent(nb: Any, fake: FakeOllama, capsys: Any) -> None:
    nb.user_ns["schema"] = {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 2}}}
    fake.reply('{"n": 2}')
    capsys.readouterr()
    assert run(nb, "%%generate -m tiny --format schema\nGo").success
    assert capsys.readouterr().err == ""
    texts = [n["text/plain"] for n in notes(nb)]
    assert texts and all(t.startswith("Note: Ollama will not enforce") for t in texts)
    assert len(fake.requests) == 1


def test_in_a_terminal_a_note_stays_one_line_on_stderr(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply()
    capsys.readouterr()
    assert run(ip, "%%generate -m tiny --logprobs\nHi").success
    captured = capsys.readouterr()
    assert captured.err == NO_PROBABILITIES + "\n"
    assert "Note:" not in captured.out


def test_a_failure_is_still_an_error_not_a_note(nb: Any, fake: FakeOllama) -> None:
    fake.error(500, "model runner has unexpectedly stopped")
    result = run(nb, "%%generate -m tiny\nHi")
    assert not result.success
    assert isinstance(result.error_in_exec, OllamaMagicError)
    assert notes(nb) == []


# -- the contract every bundle keeps (VS Code, Colab, static viewers) ---------------------

FORBIDDEN = [
    (r"<script", "a script"),
    (r"<link", "external CSS"),
    (r"<iframe", "a frame"),
    (r"<img", "an image"),
    (r"\bsrc\s*=", "a fetched resource"),
    (r"url\(", "a fetched resource in CSS"),
    (r"@import", "a fetched stylesheet"),
    (r"\bon[a-z]+\s*=", "an event handler"),
    (r"var\(--[\w-]+\)", "a theme variable without a fallback (stripped from untrusted outputs)"),
]


def assert_contract(messages: list[dict[str, Any]]) -> int:
    """Every bundle with HTML has text/plain beside it, and its HTML fetches and runs nothing."""
    checked = 0
    for message in messages:
        data = message.get("data") or {}
        markup = data.get("text/html")
        if markup is None:
            continue
        checked += 1
        assert data.get("text/plain"), f"text/html without text/plain: {markup[:200]}"
        for pattern, what in FORBIDDEN:
            assert not re.search(pattern, markup, re.IGNORECASE), f"{what} in an output: {markup[:300]}"
        assert set(data) <= {"text/plain", "text/html"}, sorted(data)
    return checked


def test_answers_footers_notes_and_probabilities_keep_the_contract(nb: Any, fake: FakeOllama) -> None:
    ln2 = -0.69
    fake.stream(
        chunk("Hey <b>", logprobs=[entry("Hey", ln2, ("Hey", ln2), ("Hi", -1.2))]),
        chunk(" now ![x](http://example.com/x.png)", logprobs=[entry(" now", -0.1)]),
        final([1]),
    )
    assert run(nb, "%%generate -m tiny --logprobs 2\nHi").success
    fake.reply()
    assert run(nb, "%%generate -m tiny --logprobs\nHi").success  # the note
    assert assert_contract(nb.publisher.messages) >= 4


def test_a_comparison_keeps_the_contract(nb: Any, multi: ModelFake) -> None:  # noqa: F811
    multi.answer("alpha", "Hello from alpha", [1, 2])
    multi.answer("beta", "Hi from beta", [3, 4])
    assert run(nb, f"%%generate -m alpha -m beta --host {multi.host}\nSay hi").success
    assert assert_contract(nb.publisher.messages) >= 1


@pytest.fixture
def echo_nb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    with serve() as server:
        shell = start_ipython() or get_ipython()
        shell.config.pop("GenerateMagics", None)
        shell.run_line_magic("reload_ext", "ollama_magic")
        shell.run_line_magic("config", f"GenerateMagics.host = {server.host!r}")
        with notebook_like(shell):
            yield shell
        shell.run_line_magic("unload_ext", "ollama_magic")
        shell.user_ns.pop("xs", None)


def test_a_batch_table_keeps_the_contract(echo_nb: Any) -> None:
    echo_nb.user_ns["xs"] = ["apples", "pears"]
    assert run(echo_nb, "%%generate -m tiny --each xs\nName {item}").success
    assert assert_contract(echo_nb.publisher.messages) >= 2
    final_html = echo_nb.publisher.messages[-1]["data"]["text/html"]
    assert "<table" in final_html


def test_a_streaming_answer_is_busy_and_the_saved_one_is_not(nb: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("Hey"), chunk(" now"), final([1]))
    assert run(nb, "%%generate -m tiny\nHi").success
    shown = [m["data"]["text/html"] for m in nb.publisher.messages if "data" in m]
    assert any('aria-busy="true"' in h for h in shown[:-1])  # while it streamed
    assert "aria-busy" not in shown[-1]  # the final output, the one saved


def test_every_widget_the_package_draws_is_a_stock_ipywidget() -> None:
    """No custom frontend code: VS Code and Colab draw only ipywidgets' own widget models."""
    import ipywidgets as w

    from ollama_magic.server.pull import NotebookPullView
    from ollama_magic.widgets.panel import GeneratePanel

    def tree(widget: Any) -> list[Any]:
        return [widget, *(x for child in getattr(widget, "children", ()) for x in tree(child))]

    shown: list[Any] = []
    panel = GeneratePanel(models=["tiny"], host="127.0.0.1:9")
    pull = NotebookPullView(shown.append)
    widgets = tree(panel.widget) + [x for s in shown for x in tree(s)] + tree(pull.box)
    assert len(widgets) > 15
    for widget in widgets:
        assert isinstance(widget, w.DOMWidget)
        assert widget._model_module in ("@jupyter-widgets/controls", "@jupyter-widgets/base"), type(widget)
        assert widget._view_module in ("@jupyter-widgets/controls", "@jupyter-widgets/base"), type(widget)
