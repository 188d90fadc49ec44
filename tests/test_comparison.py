"""Several models in one cell: the same prompt to each at once, the answers side by side.

A threaded fake server answers each model with its own script, so two requests really
stream at the same time; tests/e2e/test_comparison_e2e.py does it with the real Ollama.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

import ollama_magic
from ollama_magic import GenerationInterrupted, InvalidRequestError
from ollama_magic.batch.comparison import ComparisonResult, Event, compare
from ollama_magic.engine.result import GenerationResult, Stats

from .conftest import chunk, final, run


class ModelFake:
    """A fake Ollama serving requests concurrently, each model from its own script."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[dict[str, Any]] = []
        self.scripts: dict[str, list[Any]] = {}
        self.sent: dict[str, int] = {}
        self.lock = threading.Lock()
        server.expect_request("/api/generate", method="POST").respond_with_handler(self._handle)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def answer(self, model: str, text: str, context: list[int], delay: float = 0.0, **extra: Any) -> None:
        """Queue ``text`` for ``model``, one chunk per word, ``delay`` seconds apart."""
        words = text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        objects = [chunk(p, model) for p in pieces] + [final(context, model, **extra)]
        self.scripts.setdefault(model, []).append(("stream", objects, delay))

    def error(self, model: str, status: int, message: str) -> None:
        self.scripts.setdefault(model, []).append(("error", status, message))

    def for_model(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["model"] == model]

    def _handle(self, request: Request) -> Response:
        body = request.get_json()
        model = body["model"]
        with self.lock:
            self.requests.append(body)
            script = self.scripts[model].pop(0)
        if script[0] == "error":
            return Response(json.dumps({"error": script[2]}), status=script[1], mimetype="application/json")
        _, objects, delay = script

        def lines() -> Iterator[bytes]:
            for obj in objects:
                if delay:
                    time.sleep(delay)
                with self.lock:
                    self.sent[model] = self.sent.get(model, 0) + 1
                yield (json.dumps(obj) + "\n").encode()

        return Response(lines(), mimetype="application/x-ndjson")


@pytest.fixture
def multi() -> Iterator[ModelFake]:
    server = HTTPServer(threaded=True)
    server.start()
    try:
        yield ModelFake(server)
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def answer_length(column: str) -> int:
    """How much of a one-line answer a column shows (0 while it waits for its first token)."""
    return 0 if column.startswith("waiting for the first token") else len(column.split("\n", maxsplit=1)[0])


def finished(column: str) -> bool:
    """Whether a column shows its footer (its model's answer is complete)."""
    return any(line.startswith("— ") for line in column.splitlines())


def overlapped(seen: list[dict[str, str]], a: str, b: str) -> bool:
    """Whether the display updates ``seen`` prove that models ``a`` and ``b`` streamed at
    the same time: one update shows ``a``'s answer begun while ``b`` is unfinished, and
    one shows ``b``'s begun while ``a`` is unfinished.  Had the server answered one after
    the other, the first would be complete, footer and all, before the second showed a
    word, and one of the two could never be seen."""

    def begun_while_unfinished(x: str, y: str) -> bool:
        return any(answer_length(c[x]) > 0 and not finished(c[y]) for c in seen)

    return begun_while_unfinished(a, b) and begun_while_unfinished(b, a)


def columns(plain: str) -> dict[str, str]:
    """The text of each model's column in a comparison's text/plain."""
    parts = re.split(r"^── (.+) ──\n", plain.split("\n══ ", maxsplit=1)[0], flags=re.MULTILINE)
    return {parts[i]: parts[i + 1].rstrip("\n") for i in range(1, len(parts), 2)}


class Columns(HTMLParser):
    """The model headers and footers of a comparison's HTML, in order."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.footers: list[str] = []
        self.summary = ""
        self.styles: list[str] = []
        self._into: str | None = None
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = a.get("class") or ""
        if classes == "ollama-magic-column":
            self.styles.append(a.get("style") or "")
        self._into = {
            "ollama-magic-column-model": "header",
            "ollama-magic-footer": "footer",
            "ollama-magic-summary": "summary",
        }.get(classes)

    def handle_data(self, data: str) -> None:
        if self._into == "header":
            self.headers.append(data)
        elif self._into == "footer":
            self.footers.append(data)
        elif self._into == "summary":
            self.summary += data
        self._into = None


def test_the_same_prompt_goes_to_each_model_and_the_answers_stand_side_by_side(nb: Any, multi: ModelFake) -> None:
    multi.answer("alpha", "Hello from alpha", [1, 2], delay=0.01)
    multi.answer("beta", "Hi from beta", [3, 4], delay=0.01)
    assert run(nb, f"%%generate -m alpha -m beta --host {multi.host} -t 0 -o r\nSay hi").success
    assert sorted(r["model"] for r in multi.requests) == ["alpha", "beta"]
    for body in multi.requests:
        assert body["prompt"] == "Say hi" and body["options"] == {"temperature": 0.0}
    shown = nb.publisher.final
    page = Columns(shown["text/html"])
    assert page.headers == ["alpha", "beta"]
    assert [f.split(" · ")[0] for f in page.footers] == ["alpha", "beta"]
    assert all("tok/s" in f and "thread default [" in f for f in page.footers)
    assert all("flex:1 1 22em" in s for s in page.styles) and "flex-wrap:wrap" in shown["text/html"]
    # Both made 100 tok/s (eval_count 4 in 40 ms): a tie names no winner for speed.
    assert not page.summary.startswith("fastest generation")
    assert "alpha: first token " in page.summary and "4 tokens at 100.0 tok/s, " in page.summary
    assert columns(shown["text/plain"])["alpha"].startswith("Hello from alpha")
    assert columns(shown["text/plain"])["beta"].startswith("Hi from beta")
    r = nb.user_ns["r"]
    assert isinstance(r, ComparisonResult) and list(r) == ["alpha", "beta"]
    assert r["alpha"].text == "Hello from alpha" and r["beta"].text == "Hi from beta"
    assert r.errors == {} and set(r.first_token) == {"alpha", "beta"}


def test_the_order_given_is_kept_whoever_finishes_first(ip: Any, multi: ModelFake, capsys: Any) -> None:
    # "long" writes 30 tokens at 20 tok/s and finishes last; "short" stops after 9 at 10 tok/s.
    multi.answer("long", "one two three", [1], delay=0.15, eval_count=30, eval_duration=1_500_000_000)
    multi.answer("short", "done", [2], eval_count=9, eval_duration=900_000_000)
    assert run(ip, f"%%generate -m long -m short --host {multi.host} -o r\nGo").success
    assert list(ip.user_ns["r"]) == ["long", "short"]
    assert ip.user_ns["r"].fastest == "long"  # the faster generator, though it finished last
    # In a terminal the answers are stacked, each as it completes, then the summary.
    out = capsys.readouterr().out
    assert out.index("── short ──\ndone") < out.index("── long ──\none two three")
    assert out.rstrip().splitlines()[-1].startswith("══ fastest generation: long (20.0 tok/s) · first to answer: ")


def _finished(model: str, tokens: int, tps: float) -> GenerationResult:
    stats = Stats(eval_count=tokens, eval_duration=int(tokens / tps * 1e9))
    return GenerationResult(text="...", model=model, complete=True, stats=stats)


def test_the_summary_names_each_figure_and_a_winner_only_for_fair_measures() -> None:
    """The issue's case: tiny stopped after 9 tokens, smollm2 wrote 30 at twice the speed."""
    r = ComparisonResult(["smollm2", "tiny"])
    r.record(Event("chunk", "smollm2", piece="A", seconds=0.42))
    r.record(Event("chunk", "smollm2", piece="B", seconds=0.9))  # only the first counts
    r.record(Event("chunk", "tiny", piece="Hey", seconds=0.11))
    r.record(Event("done", "tiny", result=_finished("tiny", 9, 10.4), seconds=1.13))
    r.record(Event("done", "smollm2", result=_finished("smollm2", 30, 19.5), seconds=2.70))
    assert r.fastest == "smollm2" and r.first_to_answer == "tiny"
    assert r.summary() == (
        "fastest generation: smollm2 (19.5 tok/s) · first to answer: tiny (110 ms) · "
        "smollm2: first token 420 ms, 30 tokens at 19.5 tok/s, 2.70 s in all · "
        "tiny: first token 110 ms, 9 tokens at 10.4 tok/s, 1.13 s in all"
    )


def test_no_winner_is_named_when_only_one_model_finished() -> None:
    r = ComparisonResult(["a", "b"])
    r.record(Event("chunk", "a", piece="x", seconds=0.1))
    r.record(Event("done", "a", result=_finished("a", 5, 50.0), seconds=0.2))
    r.record(Event("failed", "b", error=RuntimeError("boom"), seconds=0.3))
    assert r.fastest is None and r.first_to_answer is None
    assert r.summary() == "a: first token 100 ms, 5 tokens at 50.0 tok/s, 200 ms in all · b failed"


def test_streams_are_shown_interleaved_as_they_arrive(nb: Any, multi: ModelFake) -> None:
    run(nb, "%config GenerateMagics.update_interval = 0.0")
    multi.answer("alpha", " ".join(f"a{i}" for i in range(8)), [1], delay=0.04)
    multi.answer("beta", " ".join(f"b{i}" for i in range(8)), [2], delay=0.04)
    assert run(nb, f"%%generate -m alpha -m beta --host {multi.host}\nGo").success
    seen = [columns(m["data"]["text/plain"]) for m in nb.publisher.messages if "data" in m]
    assert overlapped(seen, "alpha", "beta"), seen
    assert len({m["transient"].get("display_id") for m in nb.publisher.messages if "data" in m}) == 1


def test_a_model_that_fails_shows_its_error_in_its_column_and_the_others_go_on(nb: Any, multi: ModelFake) -> None:
    multi.answer("alpha", "Fine", [1])
    multi.error("ghost", 404, "model 'ghost' not found")
    assert run(nb, f"%%generate -m ghost -m alpha --host {multi.host} -o r\nHi").success
    plain = columns(nb.publisher.final["text/plain"])
    assert plain["ghost"].strip().splitlines() == [
        f"Failed: ModelNotFoundError: Model 'ghost' is not on the Ollama server at http://{multi.host}: pull it with "
        "'ollama pull ghost' (or %ollama pull ghost), or see %ollama list for the models you have."
    ]
    assert plain["alpha"].startswith("Fine")
    r = nb.user_ns["r"]
    assert list(r) == ["ghost", "alpha"] and not r["ghost"].complete and r["alpha"].text == "Fine"
    assert r.errors["ghost"].startswith("ModelNotFoundError: Model 'ghost'")
    assert "ghost failed" in Columns(nb.publisher.final["text/html"]).summary


def test_when_every_model_fails_the_cell_fails_in_one_line(ip: Any, multi: ModelFake, capsys: Any) -> None:
    multi.error("a", 500, "boom")
    multi.error("b", 500, "bang")
    assert not run(ip, f"%%generate -m a -m b --host {multi.host}\nHi").success
    seen = capsys.readouterr()
    assert "Traceback" not in seen.out + seen.err
    assert "── a ──\nFailed: OllamaResponseError: Ollama answered HTTP 500: boom" in seen.out
    err = (seen.out + seen.err).strip().splitlines()[-1]
    assert err == "OllamaMagicError: Every model failed; the first: OllamaResponseError: Ollama answered HTTP 500: boom"


def test_each_model_continues_its_own_conversation(ip: Any, multi: ModelFake, capsys: Any) -> None:
    multi.answer("alpha", "A1", [11, 12])
    multi.answer("beta", "B1", [21, 22])
    assert run(ip, f"%%generate -m alpha -m beta --host {multi.host}\nFirst").success
    multi.answer("alpha", "A2", [13])
    multi.answer("beta", "B2", [23])
    assert run(ip, f"%%generate -m alpha -m beta --host {multi.host}\nSecond").success
    second = {r["model"]: r for r in multi.requests[2:]}
    assert second["alpha"]["context"] == [11, 12] and second["beta"]["context"] == [21, 22]
    assert all("context" not in r for r in multi.requests[:2])
    capsys.readouterr()
    run(ip, "%ollama threads")
    table = capsys.readouterr().out
    assert "default [alpha]" in table and "default [beta]" in table
    run(ip, "%ollama reset default")
    assert capsys.readouterr().out == "Forgot thread(s): default [alpha], default [beta]\n"
    run(ip, "%ollama threads")
    assert "default [alpha]" not in capsys.readouterr().out


def test_format_is_checked_in_each_column(nb: Any, multi: ModelFake) -> None:
    multi.answer("good", '{"n": 1}', [1])
    multi.answer("bad", '{"n": "one"}', [2])
    schema = '{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}'
    assert run(nb, f"%%generate -m good -m bad --host {multi.host} --format '{schema}' -o r\nN?").success
    assert all(r["format"]["type"] == "object" for r in multi.requests)
    r = nb.user_ns["r"]
    assert r["good"].data == {"n": 1} and r["good"].errors == []
    assert r["bad"].data is None and r["bad"].errors
    plain = columns(nb.publisher.final["text/plain"])
    assert "Schema check failed" in plain["bad"] and "Schema check failed" not in plain["good"]
    assert "rejected: the answer does not match the schema" in plain["bad"]


def test_invalid_arguments_send_nothing(ip: Any, multi: ModelFake, capsys: Any) -> None:
    assert not run(ip, f"%%generate -m a -m b --host {multi.host} --keep-alive 'five minutes'\nHi").success
    assert "keep_alive 'five minutes' is not a duration" in capsys.readouterr().err
    assert not run(ip, f"%%generate -m a -m a --host {multi.host}\nHi").success
    assert "UsageError: -m a is given twice: each model is compared once." in capsys.readouterr().err
    assert not run(ip, f"%%generate -m a -m b --host {multi.host} --cache x.sqlite\nHi").success
    assert "--cache keeps single answers and --each batches, not comparisons" in capsys.readouterr().err
    ip.user_ns["items"] = ["x", "y"]  # --each with several -m is an evaluation (test_evaluation.py)
    assert not run(ip, f"%%generate -m a -m b --host {multi.host} --each items --expect nope\n{{item}}").success
    assert "expect 'nope': a list or Series has no columns" in capsys.readouterr().err
    ip.user_ns.pop("items")
    assert multi.requests == []


def test_compare_from_python(multi: ModelFake) -> None:
    multi.answer("alpha", "A", [1])
    multi.answer("beta", "B", [2])
    r = ollama_magic.compare("Hi", ["alpha", "beta"], host=multi.host, options={"seed": 1}, think=False)
    assert list(r) == ["alpha", "beta"] and [x.text for x in r.values()] == ["A", "B"]
    assert all(b["options"] == {"seed": 1} and b["think"] is False for b in multi.requests)
    assert "alpha: first token " in r.summary() and repr(r).startswith("ComparisonResult(")
    with pytest.raises(InvalidRequestError, match="given twice"):
        compare("Hi", ["alpha", "alpha"], host=multi.host)
    with pytest.raises(InvalidRequestError, match="top_logprobs"):
        compare("Hi", ["alpha", "beta"], host=multi.host, top_logprobs=99)
    assert len(multi.requests) == 2


def test_ctrl_c_pressed_again_while_stopping_still_ends_in_one_calm_interrupt(multi: ModelFake) -> None:
    """Chunks already queued are taken in while the models stop; a second Ctrl-C then (here
    raised by on_event at every chunk) must not escape as a bare KeyboardInterrupt."""
    multi.answer("alpha", " ".join(["a"] * 300), [1])
    multi.answer("beta", " ".join(["b"] * 300), [2])
    calls = []

    def impatient(event: Any) -> None:
        if event.kind == "chunk":
            calls.append(event.model)
            if len(calls) == 1:
                time.sleep(0.3)  # meanwhile both streams queue more chunks
            raise KeyboardInterrupt

    with pytest.raises(GenerationInterrupted) as info:
        compare("Go", ["alpha", "beta"], host=multi.host, on_event=impatient)
    assert list(info.value.partial) == ["alpha", "beta"]
    assert len(calls) > 1  # the queued chunks were taken in, each raising again


def test_an_interrupt_stops_every_model_and_keeps_what_each_had(multi: ModelFake) -> None:
    multi.answer("alpha", " ".join(["a"] * 200), [1], delay=0.02)
    multi.answer("beta", " ".join(["b"] * 200), [2], delay=0.02)
    chunks: dict[str, int] = {"alpha": 0, "beta": 0}

    def interrupt_midway(event: Any) -> None:
        if event.kind == "chunk":
            chunks[event.model] += 1
            if min(chunks.values()) >= 3:
                raise KeyboardInterrupt

    with pytest.raises(GenerationInterrupted) as info:
        compare("Go", ["alpha", "beta"], host=multi.host, on_event=interrupt_midway)
    partial = info.value.partial
    assert isinstance(partial, ComparisonResult) and list(partial) == ["alpha", "beta"]
    for model, letter in (("alpha", "a"), ("beta", "b")):
        text = partial[model].text
        assert not partial[model].complete and text and set(text.split()) == {letter}
        assert partial.errors[model].startswith("GenerationInterrupted")
    assert "alpha interrupted" in partial.summary() and "beta interrupted" in partial.summary()
    # Each connection was closed, so the fake stopped streaming long before the 201 lines.
    time.sleep(0.3)
    assert multi.sent["alpha"] < 100 and multi.sent["beta"] < 100


def test_an_interrupt_also_stops_a_model_that_has_not_answered_yet(multi: ModelFake) -> None:
    multi.answer("alpha", " ".join(["a"] * 200), [1], delay=0.02)
    multi.answer("silent", "late words", [2], delay=2.0)  # still loading, say: nothing for 2 s
    chunks = {"alpha": 0}

    def interrupt_midway(event: Any) -> None:
        if event.kind == "chunk":
            chunks[event.model] += 1
            if chunks["alpha"] >= 3:
                raise KeyboardInterrupt

    with pytest.raises(GenerationInterrupted) as info:
        compare("Go", ["alpha", "silent"], host=multi.host, on_event=interrupt_midway)
    partial = info.value.partial
    # The engine's own stop (its connection shut while it waited), not a column given up on.
    assert partial.errors["silent"] == (
        "GenerationInterrupted: Interrupted before the answer began; the conversation is unchanged."
    )
    assert partial["silent"].text == "" and not partial["silent"].complete
    assert partial["alpha"].text.startswith("a a a")


def test_logprobs_are_shown_in_each_column(nb: Any, multi: ModelFake) -> None:
    from .test_newest_fields import entry

    multi.scripts["alpha"] = [
        (
            "stream",
            [chunk("Yes", "alpha", logprobs=[entry("Yes", -0.2, ("Yes", -0.2), ("No", -1.8))]), final([1], "alpha")],
            0,
        )
    ]
    multi.answer("beta", "No", [2])
    assert run(nb, f"%%generate -m alpha -m beta --host {multi.host} --logprobs 2\nOK?").success
    markup = nb.publisher.final["text/html"]
    assert markup.count('class="ollama-magic-logprobs"') == 1


def test_a_variable_holding_a_list_of_names_stands_for_them(ip: Any, multi: ModelFake) -> None:
    ip.user_ns["models"] = ["alpha", "beta"]
    multi.answer("alpha", "A", [1])
    multi.answer("beta", "B", [2])
    assert run(ip, f"%%generate -m models --host {multi.host} -o r\nHi").success
    assert list(ip.user_ns["r"]) == ["alpha", "beta"]
    ip.user_ns["alpha"] = 3  # a variable that is not a list of names does not stand for anything
    multi.answer("alpha", "A", [1])
    assert run(ip, f"%%generate -m alpha --host {multi.host} -o r\nHi").success
    assert ip.user_ns["r"].model == "alpha"
    for name in ("models", "alpha"):
        ip.user_ns.pop(name)


def test_the_overlap_check_refuses_answers_that_came_one_after_the_other() -> None:
    waiting, done = "waiting for the first token…", "\n— footer"
    one_then_other = [
        {"a": "He", "b": waiting},
        {"a": "Hello" + done, "b": waiting},
        {"a": "Hello" + done, "b": "Hi"},
        {"a": "Hello" + done, "b": "Hi there" + done},
    ]
    assert not overlapped(one_then_other, "a", "b")
    assert overlapped([*one_then_other[:1], {"a": "Hel", "b": "H"}], "a", "b")
