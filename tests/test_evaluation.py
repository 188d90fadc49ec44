"""evaluate() and ``%%generate --each DATA -m A -m B --expect``, against a fake Ollama whose
answers are scripted per model, so every figure can be checked to the exact fraction.

The data: ten reviews, the even rows positive, the odd ones negative.  Model ``a`` says
" Positive" to everything (trimming and case-folding must make it count) and fails row 7;
model ``b`` gets every row right except row 1 (it says positive) and fails row 4.
So a is right on 5 of 10 (a failure counts as wrong), b on 8 of 10, and of the 8 rows
both answered they agree on 5 (rows 0, 1, 2, 6, 8).
"""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from ollama_magic import InvalidRequestError
from ollama_magic.evaluation.model import EvaluationInterrupted
from ollama_magic.evaluation.runner import evaluate
from ollama_magic.evaluation.view import Evaluation, NotebookEvaluation

from .conftest import FINAL_STATS, notebook_like, run

Script = Callable[[str], str]


class ScriptedOllama:
    """A threaded fake: each model answers by its own function of the prompt.

    An answer ``FAIL`` is an HTTP 500, ``HANG`` a slow endless stream (and, once, a
    simulated Ctrl-C after ``interrupt_after`` answers were sent in full).
    """

    def __init__(self, server: HTTPServer, scripts: dict[str, Script]) -> None:
        self.server = server
        self.scripts = scripts
        self.sent: list[tuple[str, str]] = []
        self.completed = 0
        self.interrupt_after: int | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()
        server.expect_request("/api/generate", method="POST").respond_with_handler(self.generate)
        server.expect_request("/api/tags").respond_with_handler(self.tags)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def tags(self, request: Request) -> Response:
        models = [{"name": f"{m}:latest", "model": f"{m}:latest", "digest": f"sha256:{m}"} for m in self.scripts]
        return Response(json.dumps({"models": models}), mimetype="application/json")

    def _take_interrupt(self) -> bool:
        with self._lock:
            if self.interrupt_after is None:
                return False
            self.interrupt_after, after = None, self.interrupt_after
        deadline = time.monotonic() + 10
        while self.completed < after and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the client reads the finished answers meanwhile
        return True

    def generate(self, request: Request) -> Response:
        body = request.get_json()
        model, prompt = body["model"], body["prompt"]
        with self._lock:
            self.sent.append((model, prompt))
        answer = self.scripts[model](prompt)
        if answer == "FAIL":
            return Response(json.dumps({"error": "the model crashed"}), status=500, mimetype="application/json")

        def lines() -> Iterator[bytes]:
            try:
                if answer == "HANG":
                    if self._take_interrupt():
                        _thread.interrupt_main()
                    for _ in range(600):
                        yield (json.dumps({"model": model, "response": ".", "done": False}) + "\n").encode()
                        time.sleep(0.05)
                    return
                yield (json.dumps({"model": model, "response": answer, "done": False}) + "\n").encode()
                final = {"model": model, "response": "", "done": True, "done_reason": "stop", **FINAL_STATS}
                yield (json.dumps(final) + "\n").encode()
                with self._lock:
                    self.completed += 1
            except GeneratorExit:
                self.closed.set()
                raise

        return Response(lines(), mimetype="application/x-ndjson")


def row_of(prompt: str) -> int:
    return int(prompt.rsplit("review ", 1)[1].split(maxsplit=1)[0])


def answer_a(prompt: str) -> str:
    return "FAIL" if row_of(prompt) == 7 else " Positive\n"


def answer_b(prompt: str) -> str:
    n = row_of(prompt)
    if n == 4:
        return "FAIL"
    return "positive" if n % 2 == 0 or n == 1 else "negative"


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    http = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    http.start()
    yield http
    http.clear()
    if http.is_running():
        http.stop()


@pytest.fixture
def fake(server: HTTPServer) -> ScriptedOllama:
    return ScriptedOllama(server, {"a": answer_a, "b": answer_b})


@pytest.fixture
def reviews() -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"review {i} text" for i in range(10)], "label": ["positive", "negative"] * 5},
        index=[f"r{i}" for i in range(10)],
    )


def run_eval(fake: ScriptedOllama, data: Any, **kwargs: Any) -> Evaluation:
    kwargs.setdefault("prompt", "Is this positive or negative? {text}")
    kwargs.setdefault("models", ["a", "b"])
    kwargs.setdefault("progress", False)
    kwargs.setdefault("concurrency", 3)
    return evaluate(data, host=fake.host, **kwargs)


def exact(value: float | None, fraction: Fraction) -> bool:
    return value is not None and Fraction(value).limit_denominator(1000) == fraction


def test_accuracy_and_agreement_to_the_exact_fraction(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    ev = run_eval(fake, reviews, expect="label")
    assert len(fake.sent) == 20  # every row to every model, once
    a, b = ev.summary_rows()
    assert (a["answered"], a["failed"], b["answered"], b["failed"]) == (9, 1, 9, 1)
    assert exact(a["accuracy"], Fraction(1, 2))
    assert exact(b["accuracy"], Fraction(4, 5))
    assert exact(a["agreement"], Fraction(5, 8)) and exact(b["agreement"], Fraction(5, 8))
    assert exact(ev.agreement(), Fraction(5, 8))
    assert a["tokens"] == 9 * FINAL_STATS["eval_count"]
    assert a["median_s"] == pytest.approx(FINAL_STATS["total_duration"] / 1e9)
    assert a["tokens_per_s"] == pytest.approx(100.0)  # 4 tokens in 40 ms
    assert ev.accuracy("b") == pytest.approx(0.8)


def test_rows_go_out_interleaved_so_every_model_advances_together(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    evaluate(reviews, ["a", "b"], "review {index} {text}", host=fake.host, progress=False, concurrency=1)
    assert [m for m, _ in fake.sent[:4]] == ["a", "b", "a", "b"]
    assert fake.sent[0][1] == "review r0 review 0 text"


def test_dataframes_out_results_summary_disagreements_and_mistakes(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    ev = run_eval(fake, reviews, expect="label")
    results = ev.results
    assert isinstance(results, pd.DataFrame) and len(results) == 20
    expected_columns = ["row", "model", "prompt", "answer", "expected", "score", "correct", "seconds", "tokens"]
    assert expected_columns == list(results.columns[: len(expected_columns)])
    assert {"from_cache", "status", "error"} <= set(results.columns)
    failed = results[results.status == "failed"]
    assert sorted(zip(failed.model, failed.row, strict=True)) == [("a", "r7"), ("b", "r4")]
    assert "HTTP 500" in failed.error.iloc[0] and failed.correct.eq(False).all()
    summary = ev.summary
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["b", "accuracy"] == pytest.approx(0.8)
    # a says positive everywhere, b says negative on the odd rows but 1 (rows 4 and 7 failed)
    disagree = ev.disagreements()
    assert list(disagree.index) == ["r3", "r5", "r9"]
    assert list(disagree["a"]) == [" Positive\n"] * 3 and list(disagree["b"]) == ["negative"] * 3
    assert list(disagree["text"]) == ["review 3 text", "review 5 text", "review 9 text"]
    mistakes = ev.mistakes("b")
    assert list(mistakes.index) == ["r1", "r4"]
    assert list(mistakes.expected) == ["negative", "positive"]
    assert pd.isna(mistakes.error.iloc[0]) and "HTTP 500" in mistakes.error.iloc[1]
    with pytest.raises(KeyError, match="'c' is not in this evaluation"):
        ev.mistakes("c")


def test_expect_a_property_of_the_format_object(server: HTTPServer, reviews: pd.DataFrame) -> None:
    def json_answer(prompt: str) -> str:
        return json.dumps({"sentiment": "POSITIVE", "why": "it says so"})

    fake = ScriptedOllama(server, {"a": json_answer})
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "POSITIVE"]}, "why": {}},
        "required": ["sentiment"],
    }
    ev = run_eval(fake, reviews, models=["a"], expect="label=sentiment", format=schema)
    assert exact(ev.accuracy("a"), Fraction(1, 2))
    results = ev.results
    assert list(results.sentiment.unique()) == ["POSITIVE"] and "why" in results.columns
    assert ev.mistakes("a").answer.iloc[0] == "POSITIVE"
    html = ev._repr_mimebundle_()["text/html"]  # a cell shows the property; its tooltip the whole answer
    assert '<td class="ollama-magic-eval-answer right" title="{&quot;sentiment&quot;: &quot;POSITIVE&quot;' in html
    assert ">POSITIVE</td>" in html


def test_expect_a_callable_scores_with_the_row(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    def half_credit(answer: str, row: dict[str, Any]) -> float:
        return 1.0 if answer.strip().lower() == row["label"] else 0.5

    ev = run_eval(fake, reviews, expect=half_credit)
    # a: 5 right, 4 half, 1 failed (0) → 7/10; b: 8 right, 1 half, 1 failed → 8.5/10
    assert exact(ev.accuracy("a"), Fraction(7, 10))
    assert exact(ev.accuracy("b"), Fraction(17, 20))
    assert ev.expect is not None and ev.expect.describe() == "half_credit"


def test_expected_values_for_a_list(fake: ScriptedOllama) -> None:
    data = [f"review {i}" for i in range(4)]
    ev = evaluate(data, ["b"], "{item}", host=fake.host, progress=False, expect=lambda a, row: a == "positive")
    assert exact(ev.accuracy("b"), Fraction(3, 4))  # rows 0, 1, 2 say positive


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expect": "nope"}, "the data has no such column"),
        ({"expect": "label=sentiment"}, "needs format, an object schema"),
        (
            {"expect": "label=mood", "format": {"type": "object", "properties": {"sentiment": {"type": "string"}}}},
            "has no property 'mood'",
        ),
        ({"expect": "label="}, "write COLUMN or COLUMN=PROPERTY"),
        ({"models": ["a", "a"]}, "given twice"),
        ({"models": []}, "list of model names"),
        ({"prompt": {"x": ""}}, "not a template"),
        ({"prompt": "{nothing}"}, "Item 0 of --each"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_bad_arguments_send_nothing(
    fake: ScriptedOllama, reviews: pd.DataFrame, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        run_eval(fake, reviews, **kwargs)
    assert fake.sent == []


def test_prompt_variants_are_compared_like_models(server: HTTPServer, reviews: pd.DataFrame) -> None:
    def polite(prompt: str) -> str:  # right only when asked politely
        n = row_of(prompt)
        if prompt.startswith("Please"):
            return "positive" if n % 2 == 0 else "negative"
        return "positive"

    fake = ScriptedOllama(server, {"a": polite, "b": lambda p: "positive"})
    variants = {"plain": "{text}", "polite": "Please label: {text}"}
    ev = run_eval(fake, reviews, prompt=variants, expect="label")
    assert len(fake.sent) == 40  # 2 variants × 2 models × 10 rows
    labels = [c.label for c in ev.contenders]
    assert labels == ["plain · a", "plain · b", "polite · a", "polite · b"]
    summary = ev.summary
    assert list(summary.columns[:2]) == ["model", "prompt"]
    assert summary.loc["polite · a", "accuracy"] == 1.0
    assert summary.loc["plain · a", "accuracy"] == 0.5
    assert ev.accuracy("a", "polite") == 1.0
    assert set(ev.results.prompt) == {"plain", "polite"}


def test_one_model_many_variants_are_labelled_by_variant(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    ev = run_eval(fake, reviews, models=["b"], prompt={"short": "{text}", "long": "Say: {text}"}, expect="label")
    assert [c.label for c in ev.contenders] == ["short", "long"]
    assert exact(ev.agreement(), Fraction(1, 1))  # b answers the same whatever the wording


def test_a_re_run_from_the_cache_sends_nothing(fake: ScriptedOllama, reviews: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "eval.sqlite"
    first = run_eval(fake, reviews, expect="label", cache=str(path))
    sent = len(fake.sent)
    assert sent == 20
    again = run_eval(fake, reviews, expect="label", cache=str(path))
    assert len(fake.sent) == sent + 2  # only the two failed items are asked again
    assert again.results.from_cache.sum() == 18
    assert again.summary_rows()[1]["accuracy"] == first.summary_rows()[1]["accuracy"]


def test_a_failed_item_per_model_is_shown_in_the_grid(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    displayed: list[Any] = []

    class Handle:
        def update(self, obj: Any) -> None:
            displayed.append(obj)

    def display(obj: Any, display_id: bool = False) -> Handle:
        displayed.append(obj)
        return Handle()

    view = NotebookEvaluation(display, rows=10)
    run_eval(fake, reviews, expect="label", progress=view)
    final = displayed[-1]._repr_mimebundle_()["text/html"]
    assert final.count('class="ollama-magic-eval-failed"') == 2
    assert "Ollama answered HTTP 500: the model crashed" in final  # the reason is the failed cell's tooltip
    assert "9 / 10 · 1 failed" not in final  # the lines count failures among the done ones
    assert "10 / 10 · 1 failed" in final
    assert '<div class="ollama-magic-eval-chart"' in final and "<img" not in final
    plain = displayed[-1]._repr_mimebundle_()["text/plain"]
    assert "accuracy" in plain and "50%" in plain and "80%" in plain


def test_ctrl_c_mid_grid_keeps_and_scores_what_finished(server: HTTPServer, reviews: pd.DataFrame) -> None:
    def hangs_from_row_3(prompt: str) -> str:
        return "HANG" if row_of(prompt) >= 3 else answer_a(prompt)

    fake = ScriptedOllama(server, {"a": hangs_from_row_3, "b": answer_b})
    fake.interrupt_after = 6  # rows 0-2 of both models answered; then both workers end up on a hanging row
    with pytest.raises(EvaluationInterrupted) as caught:
        run_eval(fake, reviews, expect="label", concurrency=2)
    ev = caught.value.evaluation
    assert ev.interrupted and "answers kept" in str(caught.value)
    assert fake.closed.wait(5)  # the hanging request's connection was shut
    a, b = ev.summary_rows()
    assert a["answered"] >= 3 and b["answered"] >= 3
    assert a["answered"] + b["answered"] < 20
    assert len(fake.sent) < 20  # the rest were never sent
    assert len(ev.results) == a["answered"] + a["failed"] + b["answered"] + b["failed"]
    # only rows that ran are scored: a is right on the even ones of rows 0-2 at least
    assert ev.results[ev.results.model == "a"].row.tolist() == ["r0", "r1", "r2"]
    assert exact(ev.accuracy("a"), Fraction(2, 3))  # rows 0 and 2 right, 1 wrong; the rest did not run


# -- the magic --------------------------------------------------------------------------------


@pytest.fixture
def shell(fake: ScriptedOllama, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    ip = start_ipython() or get_ipython()
    ip.config.pop("GenerateMagics", None)
    ip.run_line_magic("reload_ext", "ollama_magic")
    ip.run_line_magic("config", f"GenerateMagics.host = {fake.host!r}")
    yield ip
    ip.run_line_magic("unload_ext", "ollama_magic")
    for name in ("out", "reviews", "score", "schema", "xs"):
        ip.user_ns.pop(name, None)


def test_the_magic_runs_every_row_on_every_model_and_scores_it(
    shell: Any, fake: ScriptedOllama, reviews: pd.DataFrame
) -> None:
    shell.user_ns["reviews"] = reviews
    result = run(shell, "%%generate --each reviews -m a -m b --expect label --concurrency 3 -o out\nSay: {text}")
    assert result.success, result.error_in_exec
    ev = shell.user_ns["out"]
    assert isinstance(ev, Evaluation)
    assert len(fake.sent) == 20
    assert exact(ev.accuracy("a"), Fraction(1, 2)) and exact(ev.accuracy("b"), Fraction(4, 5))


def test_the_magic_in_a_terminal_prints_the_summary_table(
    shell: Any, fake: ScriptedOllama, reviews: pd.DataFrame, capsys: Any
) -> None:
    shell.user_ns["reviews"] = reviews
    assert run(shell, "%%generate --each reviews -m a -m b --expect label -o out\nSay: {text}").success
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("model"))
    columns = "model answered failed accuracy agreement median s/row p95 s/row tokens/s tokens"
    assert header.split() == columns.split()
    assert [line.split()[:5] for line in lines if line.startswith(("a ", "b "))] == [
        ["a", "9", "1", "50%", "62%"],
        ["b", "9", "1", "80%", "62%"],
    ]
    assert any(line.startswith("— 10 rows × 2 = 20 answers · expected: label") for line in lines)


def test_ctrl_c_in_the_magic_keeps_the_partial_evaluation_in_out(
    shell: Any, fake: ScriptedOllama, reviews: pd.DataFrame
) -> None:
    fake.scripts["a"] = lambda p: "HANG" if row_of(p) >= 3 else "positive"
    fake.interrupt_after = 6
    shell.user_ns["reviews"] = reviews
    result = run(shell, "%%generate --each reviews -m a -m b --expect label -o out\n{text}")
    assert not result.success  # Run All stops here
    assert isinstance(result.error_in_exec, EvaluationInterrupted)
    ev = shell.user_ns["out"]
    assert isinstance(ev, Evaluation) and ev.interrupted
    assert ev.results[ev.results.model == "a"].row.tolist() == ["r0", "r1", "r2"]


def test_the_magic_takes_a_callable_from_the_namespace_and_shows_the_grid(
    shell: Any, fake: ScriptedOllama, reviews: pd.DataFrame
) -> None:
    shell.user_ns["reviews"] = reviews
    shell.user_ns["score"] = lambda answer, row: float(answer.strip().lower() == row["label"])
    with notebook_like(shell) as nb:
        assert run(nb, "%%generate --each reviews -m a -m b --expect score -o out\n{text}").success
        messages = nb.publisher.messages
    htmls = [m["data"]["text/html"] for m in messages if "data" in m]
    assert "ollama-magic-eval-grid" in htmls[0] and "0 / 10" in htmls[0]
    assert all(m.get("update") for m in messages[1:])  # one output, updated in place
    final = htmls[-1]
    assert "ollama-magic-eval-summary" in final and "ollama-magic-eval-chart" in final
    assert exact(shell.user_ns["out"].accuracy("b"), Fraction(4, 5))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%%generate -m a --expect label\nHi", "--expect only applies with --each"),
        ("%%generate --each reviews -m a -m b --expect nope\n{text}", "the data has no such column"),
        ("%%generate --each reviews -m a -m a\n{text}", "given twice"),
        ("%%generate --each reviews -m a --expect label=x\n{text}", "needs format"),
    ],
)
def test_the_magic_refuses_bad_options_and_sends_nothing(
    shell: Any, fake: ScriptedOllama, reviews: pd.DataFrame, line: str, message: str
) -> None:
    shell.user_ns["reviews"] = reviews
    result = run(shell, line)
    assert not result.success
    assert message in str(result.error_in_exec)
    assert fake.sent == []


def test_the_magic_with_one_model_and_no_expect_is_still_a_plain_batch(
    shell: Any, fake: ScriptedOllama, reviews: pd.DataFrame
) -> None:
    shell.user_ns["reviews"] = reviews
    assert run(shell, "%%generate --each reviews -m b -o out\n{text}").success
    assert isinstance(shell.user_ns["out"], pd.DataFrame)  # --each alone keeps its DataFrame out
    assert run(shell, "%%generate --each reviews -m b --expect label -o out\n{text}").success
    assert isinstance(shell.user_ns["out"], Evaluation)


def test_untrusted_answers_are_escaped_in_the_grid_and_the_chart(server: HTTPServer, reviews: pd.DataFrame) -> None:
    evil = '<script>alert(1)</script><img src="http://x/y.png">' + "x" * 200
    fake = ScriptedOllama(server, {"<b>m</b>": lambda p: evil})
    ev = run_eval(fake, reviews, models=["<b>m</b>"], expect="label")
    html = ev._repr_mimebundle_()["text/html"]
    assert "<script>" not in html and '<img src="http' not in html and "<b>m</b>" not in html
    assert "&lt;script&gt;" in html and "<details>" in html  # long: shortened, the whole on a click
    svg = ev.chart().svg
    assert "<b>" not in svg and "&lt;b&gt;m&lt;/b&gt;" in svg and "<script" not in svg
    assert ev.chart()._repr_mimebundle_()["image/svg+xml"] == svg and svg.startswith("<svg ")


def test_without_expect_the_models_are_compared_not_scored(fake: ScriptedOllama, reviews: pd.DataFrame) -> None:
    ev = run_eval(fake, reviews)
    a, b = ev.summary_rows()
    assert a["accuracy"] is None and b["accuracy"] is None
    assert exact(a["agreement"], Fraction(5, 8))
    assert ev.results.score.isna().all() and ev.results.expected.isna().all()
    html = ev._repr_mimebundle_()["text/html"]
    assert ">accuracy<" not in html, html[html.find(">accuracy<") - 300 : html.find(">accuracy<") + 50]
    assert ">agreement<" in html and "% right" not in html
    with pytest.raises(InvalidRequestError, match="mistakes\\(\\) needs an evaluation with expect"):
        ev.mistakes("a")


def test_a_score_function_that_raises_leaves_those_answers_unscored_and_says_so(
    fake: ScriptedOllama, reviews: pd.DataFrame
) -> None:
    def picky(answer: str, row: dict[str, Any]) -> float:
        if row["index"] == "r2":
            raise KeyError("no such field")
        return 1.0

    notes: list[str] = []
    ev = run_eval(fake, reviews, models=["b"], expect=picky, on_warning=notes.append)
    assert len(fake.sent) == 10  # the run went on
    assert notes == [
        "expect picky(answer, row) failed on 1 answers, which are left unscored; "
        "the first: KeyError: 'no such field' (row r2)"
    ]
    # 9 scored: 8 right, row 4 failed (0)
    assert exact(ev.accuracy("b"), Fraction(8, 9))
    assert ev.results.set_index("row").score.isna().loc["r2"]


def test_a_terminal_sees_one_line_per_contender_rewritten_then_the_table(
    fake: ScriptedOllama, reviews: pd.DataFrame
) -> None:
    from ollama_magic.evaluation.view import TerminalEvaluation

    from .conftest import TerminalScreen

    screen, log = TerminalScreen(), io.StringIO()
    for out in (screen, log):
        run_eval(fake, reviews, expect="label", progress=TerminalEvaluation(out, interval=0.0))
    live, table = screen.getvalue().split("\n", 1)
    assert live.startswith("\r") and live.count("\r") >= 2  # one line, drawn again in place
    assert "a " in live and " | b " in live  # every contender on it
    assert "\r" not in log.getvalue()  # a log gets only the table at the end
    assert "accuracy" in table and "accuracy" in log.getvalue()
