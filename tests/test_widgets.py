"""The click-instead-of-type panel: it generates, streams, stops, and shares threads."""

from __future__ import annotations

import time
from typing import Any

from ollama_magic.widgets.panel import GeneratePanel

from .conftest import FakeOllama, chunk, final, run

TAGS = {"models": [{"name": "tiny:latest"}, {"name": "llama3.2:latest"}]}


def panel_for(fake: FakeOllama, **kwargs: Any) -> GeneratePanel:
    return GeneratePanel(host=fake.host, **kwargs)


def test_lists_models_and_generates(fake: FakeOllama) -> None:
    fake.server.expect_request("/api/tags").respond_with_json(TAGS)
    panel = panel_for(fake)
    assert panel.model.options == ("llama3.2:latest", "tiny:latest")
    panel.model.value = "tiny"
    panel.prompt.value = "Why is the sky blue?"
    panel.system.value = "Be brief."
    panel.temperature.value = 0.3
    panel.num_predict.value = 20
    fake.reply("Hey now!", context=[4, 5])
    panel.start()
    assert panel.stop_button.disabled is False
    panel.wait(10)
    assert fake.last == {
        "model": "tiny",
        "prompt": "Why is the sky blue?",
        "stream": True,
        "system": "Be brief.",
        "options": {"temperature": 0.3, "num_predict": 20},
    }
    assert "Hey now!" in panel.output.value
    assert "tiny · 4 tokens" in panel.output.value  # the footer, under the answer
    assert panel.result is not None
    assert panel.result.context == [4, 5]
    assert panel.generate_button.disabled is False
    assert panel.stop_button.disabled is True


def test_next_answer_continues_and_new_conversation_resets(fake: FakeOllama) -> None:
    panel = panel_for(fake, models=["tiny"])
    panel.prompt.value = "One"
    fake.reply(context=[1, 2])
    panel.start()
    panel.wait(10)
    fake.reply(context=[3])
    panel.start()
    panel.wait(10)
    assert fake.last["context"] == [1, 2]
    panel.new_conversation()
    fake.reply(context=[3])
    panel.start()
    panel.wait(10)
    assert "context" not in fake.last


def test_stop_keeps_partial_text_and_thread(fake: FakeOllama) -> None:
    panel = panel_for(fake, models=["tiny"], update_interval=0.0)
    panel.prompt.value = "Long"
    fake.stream(*(chunk(f"w{i} ") for i in range(300)), final([9]), delay=0.01)
    panel.start()
    deadline = time.monotonic() + 5
    while "w3" not in panel.output.value and time.monotonic() < deadline:
        time.sleep(0.01)
    panel.stop()
    panel.wait(10)
    assert "w0 w1 w2 w3" in panel.output.value
    assert "Stopped — the partial answer is kept; the conversation is unchanged." in panel.output.value
    assert panel.status.value == ""  # one message, not two
    assert fake.yielded[-1] < 250
    assert panel.conversations.thread("default").head.turns == 0


def test_errors_are_shown_in_the_panel(fake: FakeOllama) -> None:
    panel = panel_for(fake, models=["nope"])
    panel.prompt.value = "Hi"
    fake.error(404, "model 'nope' not found")
    panel.start()
    panel.wait(10)
    assert "Model &#x27;nope&#x27; is not on the Ollama server" in panel.status.value
    panel.prompt.value = ""
    assert panel.start() is None
    assert "write a prompt first" in panel.status.value


def test_unreachable_server_when_listing_models() -> None:
    panel = GeneratePanel(host="127.0.0.1:9")
    assert panel.model.options == ()
    assert "Could not reach Ollama at http://127.0.0.1:9" in panel.status.value


def test_model_output_is_not_html(fake: FakeOllama) -> None:
    panel = panel_for(fake, models=["tiny"])
    panel.prompt.value = "Hi"
    fake.stream(chunk("<script>alert(1)</script>"), final([1]))
    panel.start()
    panel.wait(10)
    assert "<script>" not in panel.output.value
    assert "&lt;script&gt;" in panel.output.value


def test_ollama_ui_shares_threads_with_the_magic(nb: Any, fake: FakeOllama) -> None:
    fake.server.expect_request("/api/tags").respond_with_json(TAGS)
    fake.reply(context=[7])
    run(nb, "%%generate -m tiny\nFirst")
    run(nb, "%ollama ui")
    panel_messages = [m for m in nb.publisher.messages if "application/vnd.jupyter.widget-view+json" in m["data"]]
    assert panel_messages
    magics = nb.magics_manager.registry["GenerateMagics"]
    panel = GeneratePanel(host=fake.host, conversations=magics.conversations, models=["tiny"])
    panel.prompt.value = "Second"
    fake.reply(context=[8])
    panel.start()
    panel.wait(10)
    assert fake.last["context"] == [7]


def _controls(widget: Any) -> list[Any]:
    """The panel's widgets in page order (the keyboard's Tab order)."""
    children = getattr(widget, "children", None)
    if children is None:
        return [widget]
    return [leaf for child in children for leaf in _controls(child)]


def test_keyboard_order_names_and_a_polite_announcement_at_the_end(fake: FakeOllama) -> None:
    panel = panel_for(fake, models=["tiny"], update_interval=0.0)
    order = _controls(panel.widget)
    assert order.index(panel.model) < order.index(panel.prompt) < order.index(panel.generate_button)
    assert order.index(panel.generate_button) < min(order.index(panel.thread), order.index(panel.system))
    # Every control has a name a screen reader reads (a label or the button's text).
    for control in (panel.model, panel.prompt, panel.system, panel.temperature, panel.num_predict, panel.thread):
        assert control.description
    fake.stream(chunk("Hey"), chunk(" now"), final([1]))
    panel.prompt.value = "Hi"
    panel.start()
    panel.wait(10)
    assert 'aria-busy="false"' in panel.output.value  # the answer is whole: nothing pending
    assert 'aria-live="off"' in panel.output.value  # not read again at every update
    assert 'role="status" aria-live="polite"' in panel.announcer.value
    assert "Answer complete." in panel.announcer.value
    assert panel.status.value == ""  # nothing drawn twice: the announcement is for screen readers
