"""Odd servers: what a broken server or proxy sends gives one clear line, never a traceback.

Each case is a fault the real Ollama does not produce (so the fake server plays it):
invalid UTF-8, a lone surrogate escape, values of the wrong type, entries without a name,
a line that never ends.  The answer so far is kept wherever there is one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ollama_magic.server.management import loaded_table, model_names, models_table, show_text

from .conftest import FakeOllama, chunk, final, run


def test_tags_with_null_names_and_odd_values_still_list(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/tags").respond_with_json(
        {
            "models": [
                {"name": None, "size": "big", "details": None, "modified_at": 5},
                {"name": "tiny:latest", "size": 520_000, "details": {"family": ["llama"]}},
                {"size": 1},
                "not a model",
                {"name": 7, "size": float("nan"), "details": "x"},
            ]
        }
    )
    result = run(ip, "%ollama list")
    out = capsys.readouterr()
    assert result.success, out.err
    lines = out.out.splitlines()
    assert lines[0].startswith("NAME")
    assert [line.split()[0] for line in lines[1:]] == ["7", "?", "?", "tiny:latest"]
    assert "Traceback" not in out.out + out.err


def test_tables_read_every_value_defensively() -> None:
    odd: list[Any] = [{"name": None}, {"name": 3, "size": True, "size_vram": "1"}, None, [1], {"expires_at": []}]
    assert models_table(odd).startswith("NAME")
    assert loaded_table(odd).startswith("NAME")
    assert models_table([]).startswith("No models")
    assert show_text("m", {"details": [], "capabilities": [None, 1, "vision"], "parameters": 5}).startswith("Model m")
    assert show_text("m", ["not", "a", "dict"]) == "Model m"  # type: ignore[arg-type]
    assert model_names([{"name": None}, {"name": "b"}, {"name": "a\x1b[2J"}, "x", {"name": 5}]) == ["a", "b"]


def test_a_tags_answer_that_is_not_an_object_is_one_line(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/tags").respond_with_json([{"name": "tiny"}])
    fake.server.expect_request("/api/ps").respond_with_json({"models": "none"})
    result = run(ip, "%ollama list")
    assert not result.success
    seen = capsys.readouterr()
    assert "answered /api/tags with JSON of an unexpected shape (list)" in seen.out + seen.err
    assert len((seen.out + seen.err).strip().splitlines()) == 1
    assert run(ip, "%ollama ps").success
    assert "No model is loaded" in capsys.readouterr().out


def test_the_panel_lists_models_despite_null_names(fake: FakeOllama) -> None:
    from ollama_magic.widgets.panel import GeneratePanel

    fake.server.expect_request("/api/tags").respond_with_json({"models": [{"name": None}, {"name": "tiny:latest"}]})
    panel = GeneratePanel(host=fake.host)
    assert panel.model.options == ("tiny:latest",)
    assert not re.search("error", panel.status.value, re.I)


# -- the stream -------------------------------------------------------------------------


def raw_stream(fake: FakeOllama, *lines: bytes) -> None:
    """Queue an answer made of raw bytes (what a broken server or proxy may send)."""
    from werkzeug.wrappers import Response

    fake.answers.append(lambda body: Response(iter(lines), mimetype="application/x-ndjson"))


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def test_invalid_utf8_in_a_line_is_replaced_and_the_answer_goes_on(nb: Any, fake: FakeOllama) -> None:
    raw_stream(
        fake,
        line(chunk("Hey")),
        b'{"model": "tiny", "response": " n\xff\xfeow", "done": false}\n',
        line(chunk("!")),
        line(final([1, 2])),
    )
    assert run(nb, "%%generate -m tiny -o r\nHi").success
    result = nb.user_ns["r"]
    assert result.text == "Hey n\ufffd\ufffdow!" and result.complete
    assert "Hey n\ufffd\ufffdow!" in nb.publisher.final["text/plain"]
    fake.reply()
    run(nb, "%%generate -m tiny\nAgain")
    assert fake.last["context"] == [1, 2]  # the conversation went on


def test_a_lone_surrogate_escape_is_replaced_so_the_answer_shows_and_is_kept(nb: Any, fake: FakeOllama) -> None:
    from jupyter_client.session import json_packer  # what the kernel does to send a display message

    raw_stream(
        fake,
        line(chunk("Smile ")),
        b'{"model": "tiny", "response": "\\ud83d", "done": false}\n',
        b'{"model": "tiny", "response": " and a pair \\ud83d\\ude00, then \\udc00 more", "done": false}\n',
        b'{"model": "tiny", "response": "", "thinking": "\\ud800", "done": false}\n',
        line(final([1])),
    )
    assert run(nb, "%%generate -m tiny -o r\nHi").success
    result = nb.user_ns["r"]
    assert result.text == "Smile \ufffd and a pair \U0001f600, then \ufffd more"
    assert result.thinking == "\ufffd"
    for message in nb.publisher.messages:
        json_packer(message["data"])  # raised UnicodeEncodeError before: the answer was lost
    assert "Smile \ufffd and a pair \U0001f600" in nb.publisher.final["text/html"]


def test_utf8_encoded_surrogates_and_a_byte_order_mark_are_survived(nb: Any, fake: FakeOllama) -> None:
    from jupyter_client.session import json_packer

    raw_stream(
        fake,
        b"\xef\xbb\xbf" + line(chunk("Hey")),  # a byte order mark, as some proxies add
        b'{"model": "tiny", "response": " \xed\xa0\xbd", "done": false}\n',  # a surrogate in UTF-8 bytes
        line(chunk(" now")),
        line(final([1])),
    )
    assert run(nb, "%%generate -m tiny -o r\nHi").success
    assert nb.user_ns["r"].text == "Hey \ufffd\ufffd\ufffd now"
    for message in nb.publisher.messages:
        json_packer(message["data"])


@pytest.mark.parametrize(
    "odd",
    [
        {"eval_count": "5"},
        {"model": 123},
        {"model": None, "eval_count": 4.0, "eval_duration": "fast", "total_duration": -5},
        {"done_reason": ["stop"], "context": "not a list", "load_duration": True},
        {"context": [1, "2", None]},
        {"prompt_eval_count": {"n": 1}, "model": ["x"]},
    ],
)
def test_a_final_object_with_wrong_types_is_read_defensively(
    nb: Any, fake: FakeOllama, capsys: Any, odd: dict[str, Any]
) -> None:
    fake.stream(chunk("Hey now!", model=odd.get("model", "tiny")), {**final([7]), **odd})
    result = run(nb, "%%generate -m tiny -o r\nHi")
    seen = capsys.readouterr()
    assert result.success, seen.err
    r = nb.user_ns["r"]
    assert r.text == "Hey now!" and r.complete
    assert isinstance(r.model, str) and r.model
    assert r.context is None or all(isinstance(t, int) for t in r.context)
    footer = nb.publisher.final["text/plain"].splitlines()[-1]
    assert footer.startswith("— tiny")
    repr(r)  # the result's repr reads the statistics too
    r.stats.as_dict()
    fake.reply()
    run(nb, "%%generate -m tiny\nAgain")
    assert fake.last.get("context") in (None, [7])  # a bad context is never sent back


def test_stream_pieces_that_are_not_text_are_skipped(nb: Any, fake: FakeOllama) -> None:
    fake.stream(chunk("Hey"), {**chunk(""), "response": 5}, {**chunk(" now"), "thinking": ["x"]}, final([1]))
    assert run(nb, "%%generate -m tiny -o r\nHi").success
    assert nb.user_ns["r"].text == "Hey now" and nb.user_ns["r"].thinking is None


def test_a_line_that_never_ends_stops_with_one_line_and_keeps_the_answer(
    nb: Any, fake: FakeOllama, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollama_magic.engine import client

    monkeypatch.setattr(client, "MAX_LINE_BYTES", 1024 * 1024)
    sent = []

    def endless() -> Any:
        yield line(chunk("Half an answer"))
        yield b'{"model": "tiny", "response": "'
        while len(sent) < 300:  # a server that sends no newline (19 MB here, for ever in life)
            sent.append(1)
            yield b"a" * 65536
        yield b'"}\n' + line(final([1]))

    from werkzeug.wrappers import Response

    fake.answers.append(lambda body: Response(endless(), mimetype="application/x-ndjson"))
    result = run(nb, "%%generate -m tiny -o r\nHi")
    assert not result.success
    seen = capsys.readouterr()
    text = (seen.out + seen.err).strip()
    assert text.splitlines() == [
        f"OllamaResponseError: Ollama at http://{fake.host} sent a line of over 1 MiB without ending it: "
        "the answer was stopped there (a broken server or proxy?)."
    ]
    shown = nb.publisher.final["text/plain"]
    assert shown == "Half an answer"  # kept on screen; the error line is the one message
    assert len(sent) < 300  # the client hung up soon after the limit (the sockets buffer a few MB)


def test_a_five_megabyte_line_is_still_read(ip: Any, fake: FakeOllama) -> None:
    big = "word " * 1_000_000
    fake.stream(chunk(big), final([1]))  # one 5 MB line, sent in one piece
    assert run(ip, "%%generate -m tiny -o r --quiet\nHi").success
    assert ip.user_ns["r"].text == big


def test_a_line_near_the_limit_arriving_in_small_pieces_is_read(fake: FakeOllama) -> None:
    from ollama_magic import generate
    from ollama_magic.engine.client import MAX_LINE_BYTES

    text = "x" * (MAX_LINE_BYTES - 1000)
    body = line(chunk(text))
    raw_stream(fake, *(body[i : i + 50_000] for i in range(0, len(body), 50_000)), line(final([1])))
    assert generate("Hi", "tiny", host=fake.host).text == text
