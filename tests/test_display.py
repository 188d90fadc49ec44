"""What the person sees: live updates in place, a saved final output, nothing executable."""

from __future__ import annotations

import io
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ollama_magic.display.render import Answer, NotebookView, TerminalView
from ollama_magic.engine.result import GenerationResult, Stats

from .conftest import FakeOllama, TerminalScreen, chunk, final, run


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
    footer = "tiny · 4 tokens · 100.0 tok/s · prompt 12 tokens · total 120 ms · load 20 ms · thread default"
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


def _burn_cpu(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time (what the display budget counts)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class CostlyHandle(Handle):
    """A display handle whose updates cost ``seconds`` of CPU each."""

    def __init__(self, log: list[Answer], seconds: float) -> None:
        super().__init__(log)
        self.seconds = seconds

    def update(self, obj: Answer) -> None:
        _burn_cpu(self.seconds)
        super().update(obj)


def test_display_budget_spaces_updates_by_their_cpu_cost() -> None:
    """Display updates that cost 30 ms of CPU each: the first (which makes the output) is
    free, the allowance (250 ms: a fast short answer is seen growing as before) lets eight
    more through at the interval, then the next waits until they average 0.5% of a CPU
    (4 s after the first), so on one shared CPU the model keeps its speed; the whole answer
    is still shown at the end."""
    clock = FakeClock()
    shown: list[Answer] = []

    def costly_display(obj: Answer, display_id: bool) -> Handle:
        shown.append(obj)
        return CostlyHandle(shown, 0.03)

    view = NotebookView(costly_display, interval=0.05, clock=clock)
    assert view.budget == 0.005
    view.attempt(1, 1)
    for _ in range(900):  # 900 chunks over 0.9 s of the view's clock: two updates only
        view.chunk("x", "")
        clock.now += 0.001
    assert len(shown) == 10
    assert view._next >= 3.9
    view.finish(GenerationResult("x" * 900, "m", done_reason="stop"), "m · 900 tokens")
    assert shown[-1].text == "x" * 900 and shown[-1].footer == "m · 900 tokens"


def test_without_a_display_budget_updates_follow_the_interval() -> None:
    clock = FakeClock()
    shown: list[Answer] = []

    def costly_display(obj: Answer, display_id: bool) -> Handle:
        shown.append(obj)
        return CostlyHandle(shown, 0.03)

    view = NotebookView(costly_display, interval=0.05, clock=clock)
    view.budget = None
    view.attempt(1, 1)
    for _ in range(300):
        view.chunk("x", "")
        clock.now += 0.001
    assert len(shown) >= 5  # one per 50 ms of the view's clock


def test_answer_plain_for_structured_data() -> None:
    answer = Answer('{"a":1}', data={"a": 1}, has_data=True)
    bundle = answer._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # a JSON viewer would hide the footer
    assert '"a": 1' in bundle["text/plain"]


def test_terminal_view_prints_non_streamed_text() -> None:

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


# -- the footer says what happened --------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "done_reason", "stats", "expected", "absent"),
    [
        ("--num-predict 4", "length", {}, " · cut at --num-predict 4 · ", "length"),
        ("--num-ctx 16", "length", {}, " · cut: the context window is full · ", "length"),
        ("", "stop", {}, " · load 20 ms · thread default", "stop"),
        ("", "load", {"eval_count": None}, " · model loaded (an empty prompt only loads it) · ", "· load ·"),
        ("--keep-alive 0", "unload", {}, " · model unloaded (keep-alive 0 with an empty prompt) · ", "· unload ·"),
    ],
)
def test_the_footer_says_why_the_answer_ended_in_words(
    nb: Any, fake: FakeOllama, cell: str, done_reason: str, stats: dict[str, Any], expected: str, absent: str
) -> None:
    fake.stream(chunk("Hey"), final([1], done_reason=done_reason, **stats))
    run(nb, f"%%generate -m tiny {cell}\nHi")
    footer = nb.publisher.final["text/plain"].splitlines()[-1]
    assert expected in footer + " · ", footer
    assert absent not in footer, footer


def test_a_note_goes_on_its_own_line_under_the_footer(nb: Any, fake: FakeOllama) -> None:
    fake.reply(context=[1])
    run(nb, "%%generate -m tiny\nFirst")
    fake.reply(model="other")
    run(nb, "%%generate -m other --conversation context\nSecond")
    html = nb.publisher.final["text/html"]
    footer = re.search(r'<div class="ollama-magic-footer"[^>]*>([^<]*)</div>', html)
    note = re.search(r'<div class="ollama-magic-note"[^>]*>([^<]*)</div>', html)
    assert footer is not None and note is not None
    assert "new conversation" not in footer.group(1)
    assert note.group(1) == "new conversation: the context of tiny cannot continue with other"
    assert html.index("ollama-magic-footer") < html.index("ollama-magic-note")
    plain = nb.publisher.final["text/plain"].splitlines()
    assert plain[-2].startswith("— other · ") and "new conversation" not in plain[-2]
    assert plain[-1] == "  new conversation: the context of tiny cannot continue with other"


# -- waiting for the first token, and the cursor -------------------------------------------


def slow_start(fake: FakeOllama, seconds: float, *objects: dict[str, Any]) -> None:
    """Queue an answer that sends nothing for ``seconds`` (a model loading), then ``objects``."""
    from werkzeug.wrappers import Response

    def respond(body: dict[str, Any]) -> Response:
        def lines() -> Iterator[bytes]:
            time.sleep(seconds)
            for obj in objects:
                yield (json.dumps(obj) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")

    fake.answers.append(respond)


def waiting_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ollama-magic-waiting"]


@pytest.fixture
def quick_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NotebookView, "wait_delay", 0.1)
    monkeypatch.setattr(NotebookView, "wait_every", 0.2)


def test_a_waiting_line_shows_until_the_first_token_then_the_answer_replaces_it(
    nb: Any, fake: FakeOllama, quick_waiting: None
) -> None:
    slow_start(fake, 1.0, chunk("Hey"), chunk(" now!"), final([1]))
    assert run(nb, "%%generate -m tiny\nHi").success
    messages = nb.publisher.messages
    assert len({m["transient"].get("display_id") for m in messages}) == 1  # all in the one output
    waiting = [m["data"]["text/plain"] for m in messages if "Waiting" in m["data"]["text/plain"]]
    assert waiting, "nothing was shown while the model was silent"
    assert waiting[0].startswith("Waiting for tiny (loading it if needed)… ")
    seconds = [int(re.search(r"… (\d+) s$", w).group(1)) for w in waiting]  # type: ignore[union-attr]
    assert seconds == sorted(seconds)
    first_answer = next(i for i, m in enumerate(messages) if "Hey" in m["data"]["text/plain"])
    assert all("Waiting" not in m["data"]["text/plain"] for m in messages[first_answer:])
    assert "Waiting" not in nb.publisher.final["text/html"]
    assert nb.publisher.final["text/plain"].startswith("Hey now!\n— tiny")
    assert waiting_threads() == []  # stopped with the first token


def test_no_stream_shows_the_waiting_line_until_the_whole_answer(
    nb: Any, fake: FakeOllama, quick_waiting: None
) -> None:
    slow_start(fake, 0.8, chunk("Hey"), chunk(" now!"), final([1]))
    assert run(nb, "%%generate -m tiny --no-stream\nHi").success
    texts = [m["data"]["text/plain"] for m in nb.publisher.messages]
    assert texts[0].startswith("Waiting for tiny")
    assert texts[-1].startswith("Hey now!") and "Waiting" not in texts[-1]
    assert waiting_threads() == []


def test_an_interactive_terminal_shows_the_waiting_line_and_blanks_it_for_the_answer(
    ip: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TerminalView, "wait_delay", 0.1)
    monkeypatch.setattr(TerminalView, "wait_every", 0.2)
    screen = TerminalScreen()
    monkeypatch.setattr(sys, "stdout", screen)
    slow_start(fake, 1.0, chunk("Hey"), chunk(" now!"), final([1]))
    assert run(ip, "%%generate -m tiny\nHi").success
    written = screen.getvalue()
    line = "Waiting for tiny (loading it if needed)… 0 s"
    assert written.startswith("\r" + line)  # rewritten in place with a carriage return
    before, _, after = written.partition("Hey now!")
    # Blanked (spaces, then back to the start of the line) before the answer's first word,
    # with no escape sequence anywhere.
    assert before.endswith("\r" + " " * len(line) + "\r") and "\x1b" not in written
    assert after.startswith("\n— tiny")
    assert waiting_threads() == []


def test_a_terminal_that_is_not_interactive_gets_the_answer_alone(
    ip: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(TerminalView, "wait_delay", 0.05)
    slow_start(fake, 0.5, chunk("Hey"), chunk(" now!"), final([1]))
    assert run(ip, "%%generate -m tiny\nHi").success
    out = capsys.readouterr().out
    assert out.startswith("Hey now!\n— tiny") and "Waiting" not in out and "\r" not in out


def test_a_quick_answer_never_flashes_the_waiting_line(nb: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(nb, "%%generate -m tiny\nHi").success
    assert all("Waiting" not in m["data"]["text/plain"] for m in nb.publisher.messages)
    assert waiting_threads() == []


def test_an_error_after_waiting_leaves_only_the_error(
    nb: Any, fake: FakeOllama, capsys: Any, quick_waiting: None
) -> None:
    slow_start(fake, 0.6, {"error": "llama runner process has terminated"})
    outcome = run(nb, "%%generate -m tiny\nHi")
    assert not outcome.success
    seen = capsys.readouterr()
    assert "llama runner process has terminated" in seen.out + seen.err
    assert any("Waiting" in m["data"]["text/plain"] for m in nb.publisher.messages)
    final_shown = nb.publisher.final
    assert "Waiting" not in final_shown["text/plain"] and "Waiting" not in final_shown["text/html"]
    assert waiting_threads() == []


def test_interrupt_before_any_text_says_so_and_clears_the_waiting_line(
    nb: Any, fake: FakeOllama, capsys: Any, quick_waiting: None
) -> None:
    fake.reply(context=[1])
    run(nb, "%%generate -m tiny\nFirst")
    slow_start(fake, 5.0, chunk("late"), final([9]))
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.7, signal.pthread_kill, (main, signal.SIGINT))  # Ctrl-C, as a kernel gets it
    capsys.readouterr()
    timer.start()
    outcome = run(nb, "%%generate -m tiny\nSecond")
    timer.join()
    assert not outcome.success  # so Run All stops here
    seen = capsys.readouterr()
    assert (seen.out + seen.err).strip() == "Interrupted before the answer began; the conversation is unchanged."
    assert any("Waiting" in m["data"]["text/plain"] for m in nb.publisher.messages)
    assert "Waiting" not in nb.publisher.final["text/plain"]
    assert "kept" not in nb.publisher.final["text/plain"]
    assert waiting_threads() == []
    fake.reply()
    run(nb, "%%generate -m tiny\nThird")
    assert fake.last["context"] == [1]


def test_a_cursor_ends_the_streamed_answer_but_not_the_saved_one(nb: Any, fake: FakeOllama) -> None:
    fake.stream(*(chunk(f"w{i} ") for i in range(12)), final([1]), delay=0.02)
    run(nb, "%%generate -m tiny\nCount")
    streamed = [m["data"]["text/html"] for m in nb.publisher.messages[:-1]]
    assert streamed and all('class="ollama-magic-cursor"' in h for h in streamed)
    assert re.search(r'w\d+ ?<span class="ollama-magic-cursor"[^>]*></span></p>', streamed[0])  # after the text
    final_html = nb.publisher.final["text/html"]
    assert "ollama-magic-cursor" not in final_html
    assert all("▍" not in m["data"]["text/plain"] for m in nb.publisher.messages)


def test_no_symbol_a_font_may_lack_in_what_is_shown(nb: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.stream(chunk("Half"))  # ends without done: a failure with partial text
    run(nb, "%%generate -m tiny\nHi")
    fake.reply()
    run(nb, "%%generate -m tiny\nHi")
    shown = "".join(m["data"]["text/plain"] + m["data"]["text/html"] for m in nb.publisher.messages)
    shown += "".join(capsys.readouterr())
    assert not [c for c in set(shown) if ord(c) > 0x2100], "symbols beyond punctuation need a symbol font"
