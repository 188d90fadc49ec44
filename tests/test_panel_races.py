"""The panel and the magic share conversation threads: what happens when they overlap.

- "New conversation" while an answer streams: the answer, when it completes, is not added
  (the reset is not undone) and says so; the next turn starts afresh.
- A panel answer and a ``%%generate`` cell in one thread at once: the later commit becomes
  the head and its footer says it branched; nothing is overwritten silently.
- The panel's worker never consumes the running cell's per-execution count, so a re-run
  cell still finds its branch point; the store takes a lock for every change.
- Stop ends the request at once even when the server is silent; a server error is shown
  as an error, not as "stopped"; the panel keeps the conversation's turns in view.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from ollama_magic.engine.conversation import RESET_NOTE, ConversationStore
from ollama_magic.widgets.panel import FALLBACK, STOPPED, STOPPED_EARLY, GeneratePanel

from .conftest import FakeOllama, chunk, final, notebook_like, run


@pytest.fixture
def threaded_fake() -> Iterator[FakeOllama]:
    """A fake Ollama that serves requests concurrently (a panel's and a cell's at once)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    fake = FakeOllama(server)
    server.expect_request("/api/generate", method="POST").respond_with_handler(fake._handle)
    try:
        yield fake
    finally:
        server.clear()
        server.stop()


def gated(fake: FakeOllama, gate: threading.Event, text: str, context: list[int], model: str = "tiny") -> None:
    """Queue an answer that sends ``text``, then waits for ``gate`` before finishing."""

    def respond(body: dict[str, Any]) -> Response:
        def lines() -> Iterator[bytes]:
            yield (json.dumps(chunk(text, model)) + "\n").encode()
            gate.wait(30)
            yield (json.dumps(final(context, model)) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    fake.answers.append(respond)


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def streaming_panel(fake: FakeOllama, prompt: str = "Hi", **kwargs: Any) -> GeneratePanel:
    panel = GeneratePanel(host=fake.host, models=["tiny"], update_interval=0.0, **kwargs)
    panel.prompt.value = prompt
    return panel


# -- 1. New conversation while an answer streams ----------------------------------------


def test_new_conversation_while_streaming_is_not_undone(threaded_fake: FakeOllama) -> None:
    fake = threaded_fake
    panel = streaming_panel(fake)
    fake.reply(context=[1, 2])
    panel.start()
    panel.wait(10)
    gate = threading.Event()
    gated(fake, gate, "Second answer", [1, 2, 3, 4])
    panel.start()
    assert until(lambda: "Second answer" in panel.output.value)
    panel.new_conversation()
    gate.set()
    panel.wait(10)
    assert RESET_NOTE in panel.output.value  # said under the answer that was not added
    assert panel.conversations.thread("default").head.turns == 0
    fake.reply(context=[9])
    panel.start()
    panel.wait(10)
    assert "context" not in fake.last  # the next turn starts afresh, as the click asked
    assert "Second answer" not in panel.history.value  # it belonged to the conversation cleared


def test_reset_from_a_cell_while_the_panel_streams(threaded_fake: FakeOllama, ip: Any) -> None:
    fake = threaded_fake
    run(ip, f"%config GenerateMagics.host = {fake.host!r}")
    magics = ip.magics_manager.registry["GenerateMagics"]
    panel = streaming_panel(fake, conversations=magics.conversations)
    gate = threading.Event()
    gated(fake, gate, "Streaming", [5])
    panel.start()
    assert until(lambda: "Streaming" in panel.output.value)
    run(ip, "%ollama reset default")
    gate.set()
    panel.wait(10)
    assert RESET_NOTE in panel.output.value
    fake.reply()
    run(ip, "%%generate -m tiny\nNext")
    assert "context" not in fake.last


# -- 2. A panel answer and a cell in the same thread at once --------------------------------


def test_cell_commits_while_the_panel_streams_then_the_panel_branches(threaded_fake: FakeOllama, ip: Any) -> None:
    fake = threaded_fake
    run(ip, f"%config GenerateMagics.host = {fake.host!r}")
    magics = ip.magics_manager.registry["GenerateMagics"]
    fake.reply(context=[1])
    with notebook_like(ip) as nb:
        run(nb, "%%generate -m tiny\nFirst", cell_id="c1")
        panel = streaming_panel(fake, conversations=magics.conversations)
        gate = threading.Event()
        gated(fake, gate, "Panel answer", [1, 20])
        panel.start()
        assert until(lambda: "Panel answer" in panel.output.value)
        fake.reply("Cell answer", context=[1, 30])
        run(nb, "%%generate -m tiny\nFrom the cell", cell_id="c2")
        cell_footer = nb.publisher.final["text/plain"]
        assert "branched" not in cell_footer  # the cell committed first, from the head it started on
        gate.set()
        panel.wait(10)
    assert "branched: another answer was added to thread default while this one streamed" in panel.output.value
    head = magics.conversations.thread("default").head
    assert head.context == (1, 20)  # the later one is the head; nothing was overwritten unannounced
    assert fake.requests[1]["context"] == [1] and fake.requests[2]["context"] == [1]


def test_panel_commits_while_a_cell_streams_then_the_cell_says_it_branched(threaded_fake: FakeOllama, ip: Any) -> None:
    fake = threaded_fake
    run(ip, f"%config GenerateMagics.host = {fake.host!r}")
    magics = ip.magics_manager.registry["GenerateMagics"]
    panel = streaming_panel(fake, conversations=magics.conversations)
    gate = threading.Event()
    fake.reply(context=[1])
    run(ip, "%%generate -m tiny\nFirst")
    gated(fake, gate, "Cell answer", [1, 30])
    fake.reply("Panel answer", context=[1, 20])

    def panel_meanwhile() -> None:
        assert until(lambda: len(fake.requests) == 2)  # the cell's request is streaming
        panel.start()
        panel.wait(10)
        gate.set()

    helper = threading.Thread(target=panel_meanwhile)
    helper.start()
    with notebook_like(ip) as nb:
        assert run(nb, "%%generate -m tiny\nFrom the cell").success
        footer = nb.publisher.final["text/plain"]
    helper.join(10)
    assert "branched: another answer was added to thread default" in footer
    assert "branched" not in panel.output.value
    assert magics.conversations.thread("default").head.context == (1, 30)


# -- 3. The store: one lock, and the panel does not count as the running cell ----------------


def test_the_panel_does_not_consume_the_cells_branch_point() -> None:
    store = ConversationStore()
    store.new_execution()
    first = store.start("t", "tiny", "cell-1")
    store.commit("t", first, "tiny", [1])
    store.new_execution()
    store.commit("t", store.start("t", "tiny", "cell-2"), "tiny", [1, 2])
    store.new_execution()  # cell-1 is re-run ...
    store.start("t", "tiny", None)  # ... while the panel's worker starts an answer
    rerun = store.start("t", "tiny", "cell-1")
    assert rerun.state.context is None  # cell-1's branch point (its first start), not the head


def test_the_store_survives_two_threads_at_once() -> None:
    store = ConversationStore()
    errors: list[BaseException] = []

    def hammer(name: str) -> None:
        try:
            for i in range(300):
                start = store.start(name, "tiny", None)
                store.commit(name, start, "tiny", [i])
                if i % 50 == 0:
                    store.reset(name)
                for thread in store.threads.values():  # what %ollama threads does
                    assert thread.head.turns >= 0
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(name,)) for name in ("a", "b", "a")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []


def test_a_commit_after_a_reset_reports_it_was_not_added() -> None:
    store = ConversationStore()
    start = store.start("t", "tiny", None)
    store.reset("t")
    commit = store.commit("t", start, "tiny", [1])
    assert (commit.added, commit.note) == (False, RESET_NOTE)
    assert store.thread("t").head.turns == 0


# -- Stop, errors, the conversation in view, the saved notebook ------------------------------


def test_stop_ends_a_request_to_a_silent_server_at_once(threaded_fake: FakeOllama) -> None:
    fake = threaded_fake
    panel = streaming_panel(fake)
    gate = threading.Event()
    gated(fake, gate, "Half an answer", [1])  # then silent for 30 s
    try:
        panel.start()
        assert until(lambda: "Half an answer" in panel.output.value)
        panel.stop()
        panel.wait(10)  # a stop that waited for the server's next bytes would take 30 s
        assert panel._worker is not None and not panel._worker.is_alive()
    finally:
        gate.set()
    assert "Half an answer" in panel.output.value
    assert STOPPED in panel.output.value
    assert panel.output.value.count("Stopped") == 1 and panel.status.value == ""
    assert panel.generate_button.disabled is False
    assert panel.conversations.thread("default").head.turns == 0


def test_stop_while_the_server_has_not_answered(threaded_fake: FakeOllama) -> None:
    fake = threaded_fake
    release = threading.Event()

    def loading(body: dict[str, Any]) -> Response:
        def lines() -> Iterator[bytes]:
            release.wait(30)  # no headers, no bytes: a big model loading
            yield (json.dumps(final([1])) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    fake.answers.append(loading)
    panel = streaming_panel(fake)
    try:
        panel.start()
        assert until(lambda: len(fake.requests) == 1)
        panel.stop()
        panel.wait(10)
        assert not panel._worker.is_alive()  # type: ignore[union-attr]
    finally:
        release.set()
    assert STOPPED_EARLY in panel.output.value
    assert "partial answer is kept" not in panel.output.value


def test_a_server_error_is_shown_as_an_error_not_as_stopped(fake: FakeOllama) -> None:
    panel = streaming_panel(fake)
    fake.stream(chunk("Half"), chunk(" an answer"), {"error": "model runner crashed"})
    panel.start()
    panel.wait(10)
    assert "Half an answer" in panel.output.value
    assert "Stopped" not in panel.output.value + panel.status.value
    assert "Failed" in panel.output.value
    assert "Ollama reported an error: model runner crashed" in panel.status.value
    assert "error-color" in panel.status.value
    assert panel.result is not None and panel.result.error == "Ollama reported an error: model runner crashed"


def test_the_conversation_stays_in_view_until_new_conversation(fake: FakeOllama) -> None:
    panel = streaming_panel(fake, prompt="Why is the sky blue?")
    fake.reply("Rayleigh scattering.", context=[1])
    panel.start()
    panel.wait(10)
    panel.prompt.value = "And sunsets?"
    fake.reply("Longer paths.", context=[1, 2])
    panel.start()
    panel.wait(10)
    assert "Why is the sky blue?" in panel.history.value and "Rayleigh scattering." in panel.history.value
    assert "And sunsets?" in panel.output.value and "Longer paths." in panel.output.value
    assert [turn.prompt for turn in panel.turns] == ["Why is the sky blue?", "And sunsets?"]
    panel.new_conversation()
    assert panel.history.value == "" and panel.output.value == "" and panel.turns == []


def test_prompts_in_the_transcript_are_text(fake: FakeOllama) -> None:
    panel = streaming_panel(fake, prompt="<img src=x onerror=alert(1)>")
    fake.reply()
    panel.start()
    panel.wait(10)
    assert "<img" not in panel.output.value and "&lt;img" in panel.output.value


def test_a_saved_notebook_says_to_run_the_cell_again(fake: FakeOllama) -> None:
    panel = streaming_panel(fake)
    bundle = panel.widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == FALLBACK
    assert "run the cell again" in bundle["text/html"]


def test_the_panel_output_carries_a_line_for_a_reopened_notebook(nb: Any, fake: FakeOllama) -> None:
    fake.server.expect_request("/api/tags").respond_with_json({"models": [{"name": "tiny:latest"}]})
    run(nb, "%ollama ui")
    bundles = [m["data"] for m in nb.publisher.messages if "data" in m]
    widget = next(b for b in bundles if "application/vnd.jupyter.widget-view+json" in b)
    assert widget["text/plain"] == FALLBACK
    reopened = next(b for b in bundles if "ollama-magic-panel-reopened" in b.get("text/html", ""))
    assert 'style="display:none"' in reopened["text/html"]  # shown only where JupyterLab drew no panel


def test_ollama_ui_in_a_terminal_says_it_needs_a_notebook(ip: Any, capsys: Any) -> None:
    run(ip, "%ollama ui")
    assert "The panel needs a notebook" in capsys.readouterr().out
