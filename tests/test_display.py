"""What the person sees: live updates in place, a saved final output, nothing executable."""

from __future__ import annotations

import re
from typing import Any

from ollama_magic.render import Answer, NotebookView, TerminalView
from ollama_magic.result import GenerationResult, Stats

from .conftest import FakeOllama, chunk, final, run


def test_stream_updates_one_display_in_place(nb: Any, fake: FakeOllama) -> None:
    fake.stream(*(chunk(f"w{i} ") for i in range(12)), final([1]), delay=0.02)
    assert run(nb, "%%generate -m tiny\nCount").success
    messages = nb.publisher.messages
    ids = {m["transient"].get("display_id") for m in messages}
    assert len(ids) == 1 and None not in ids  # one display, updated in place
    assert not messages[0]["update"] and all(m["update"] for m in messages[1:])
    assert 3 <= len(messages) < 12  # streamed, but throttled
    first_text = messages[0]["data"]["text/plain"]
    assert first_text.startswith("w0")
    assert "w11" in nb.publisher.final["text/plain"]


def test_final_output_has_html_text_and_footer(nb: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("Hey"), chunk(" **now**!"), final([1]))
    run(nb, "%%generate -m tiny\nHi")
    data = nb.publisher.final
    assert "<strong>now</strong>" in data["text/html"]
    assert "<style" not in data["text/html"]  # stripped in untrusted notebooks: styles are inline
    assert "text/markdown" not in data
    footer = "tiny · 4 tokens · 100.0 tok/s · prompt 12 tokens · total 120 ms · load 20 ms · stop · thread default"
    assert footer in data["text/plain"]
    assert footer in data["text/html"]


def test_quiet_and_show_stats_hide_the_footer(nb: Any, fake: FakeOllama) -> None:
    fake.reply()
    run(nb, "%%generate -m tiny --quiet\nHi")
    assert "tok/s" not in nb.publisher.final["text/plain"]
    fake.reply()
    run(nb, "%config GenerateMagics.show_stats = False")
    run(nb, "%%generate -m tiny\nHi")
    assert "tok/s" not in nb.publisher.final["text/plain"]


def test_model_output_never_becomes_html_or_script(nb: Any, fake: FakeOllama) -> None:
    evil = '<img src=x onerror="alert(1)"> <script>alert(2)</script> [x](javascript:alert(3))'
    fake.stream(chunk(evil), chunk("\n\n```\n</code><script>alert(4)</script>\n```\n"), final([1]))
    run(nb, "%%generate -m tiny\nHi")
    html = nb.publisher.final["text/html"]
    body = html
    assert "<script" not in body
    assert "<img" not in body
    assert 'href="javascript' not in body
    assert "&lt;img src=x onerror=" in body  # shown as text
    for message in nb.publisher.messages:  # the live updates too
        assert "<script" not in message["data"]["text/html"]


def test_thinking_is_shown_apart_and_collapsed(nb: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("", thinking="Let me see."), chunk("", thinking=" Sky."), chunk("Blue."), final([1]))
    run(nb, "%%generate -m tiny --think -o r\nWhy?")
    html = nb.publisher.final["text/html"]
    assert re.search(r"<details><summary>Thinking</summary>.*Let me see\. Sky\..*</details>.*Blue\.", html, re.S)
    assert nb.user_ns["r"].thinking == "Let me see. Sky."
    assert nb.user_ns["r"].text == "Blue."


def test_no_stream_shows_the_complete_answer(nb: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("Hey"), chunk(" now!"), final([1]))
    run(nb, "%%generate -m tiny --no-stream\nHi")
    assert fake.last["stream"] is False
    assert len(nb.publisher.messages) == 1
    assert nb.publisher.final["text/plain"].startswith("Hey now!")


def test_terminal_shows_plain_text_as_it_streams(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.stream(chunk("<b>Hey</b>"), chunk(" now!"), final([1]))
    run(ip, "%%generate -m tiny\nHi")
    out = capsys.readouterr().out
    assert out.startswith("<b>Hey</b> now!\n— tiny · 4 tokens")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Handle:
    def __init__(self, log: list[Answer]) -> None:
        self.log = log

    def update(self, obj: Answer) -> None:
        self.log.append(obj)


def test_view_throttles_to_the_interval() -> None:
    clock = FakeClock()
    shown: list[Answer] = []

    def display(obj: Answer, display_id: bool) -> Handle:
        shown.append(obj)
        return Handle(shown)

    view = NotebookView(display, interval=0.05, clock=clock)
    view.attempt(1, 1)
    for _ in range(1000):  # 1000 chunks over one second
        view.chunk("x", "")
        clock.now += 0.001
    assert 18 <= len(shown) <= 21
    assert shown[-1].text.startswith("x" * 950)


def test_view_backs_off_when_rendering_is_slow() -> None:
    clock = FakeClock()
    shown: list[Answer] = []

    def slow_display(obj: Answer, display_id: bool) -> Handle:
        clock.now += 0.1  # each render takes 100 ms
        shown.append(obj)
        return Handle(shown)

    view = NotebookView(slow_display, interval=0.05, clock=clock)
    view.attempt(1, 1)
    view.chunk("a", "")
    assert view._next >= 0.4  # waits 4x the render time, not just the interval


def test_answer_plain_for_structured_data() -> None:
    answer = Answer('{"a":1}', data={"a": 1}, has_data=True)
    bundle = answer._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # a JSON viewer would hide the footer
    assert '"a": 1' in bundle["text/plain"]


def test_terminal_view_prints_non_streamed_text() -> None:
    import io

    out = io.StringIO()
    view = TerminalView(out)
    view.finish(GenerationResult("whole", "tiny", stats=Stats()), "footer")
    assert out.getvalue() == "whole\n— footer\n"


def test_help_shows_usage_examples_and_the_placeholder_rule(ip: Any, capsys: Any) -> None:
    run(ip, "%%generate?")
    shown = capsys.readouterr().out
    help_text = shown[shown.index("Usage:") :]
    assert "::" not in shown
    usage = help_text.splitlines()[:6]
    assert usage[1].strip() == "%%generate [options]", usage
    assert any(line.strip().startswith("%generate [options] PROMPT") for line in usage), usage
    assert "Examples:" in help_text and "%%generate -m llama3.2\n  Why is the sky blue?" in help_text
    assert '{"name": "Ada"}' in help_text and "{{name}} sends {name}" in help_text  # the placeholder rule
    assert help_text.index("Examples:") < help_text.index("--num-predict")  # before the long option list
