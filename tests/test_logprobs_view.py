"""The token-probability view: the answer shaded token by token, alternatives on hover/click.

Tokens come from the server and are untrusted: whatever they hold is shown as text.
"""

from __future__ import annotations

import math
from html.parser import HTMLParser
from typing import Any

from ollama_magic.display.logprobs import TokenProbabilities

from .conftest import FakeOllama, chunk, final, run
from .test_newest_fields import entry


class Page(HTMLParser):
    """The elements, attributes and visible text of an HTML fragment."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.summaries: list[str] = []
        self._in_summary = False
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._in_summary = tag == "summary"

    def handle_endtag(self, tag: str) -> None:
        if tag == "summary":
            self._in_summary = False

    def handle_data(self, data: str) -> None:
        if self._in_summary:
            self.summaries.append(data)

    def tags(self) -> set[str]:
        return {tag for tag, _ in self.elements}


ln = math.log


def test_each_token_is_shaded_by_its_probability_with_its_alternatives() -> None:
    view = TokenProbabilities(
        [
            entry("The", ln(0.9), ("The", ln(0.9)), ("A", ln(0.08))),
            entry(" sky", ln(0.3), ("sea", ln(0.5)), (" sky", ln(0.3))),
        ]
    )
    page = Page(view.html())
    summaries = [attrs for tag, attrs in page.elements if tag == "summary"]
    assert page.summaries == ["The", " sky"]
    sure, unsure = (attrs["style"] for attrs in summaries)
    assert sure == "display:inline;list-style:none;cursor:pointer;background-color:rgba(62,236,19,0.35)"  # green
    assert unsure.endswith("background-color:rgba(236,149,19,0.35)")  # orange
    assert summaries[0]["title"] == "The: 90%\n  The: 90%\n  A: 8.0%"
    assert summaries[1]["title"] == "␣sky: 30%\n  sea: 50%\n  ␣sky: 30%"
    assert "least sure: ␣sky 30%" in view.html()
    assert page.tags() <= {"div", "details", "summary", "span", "br", "b"}


def test_without_alternatives_a_token_has_its_probability_on_hover_only() -> None:
    page = Page(TokenProbabilities([entry("Hi", ln(0.5))]).html())
    spans = [attrs for tag, attrs in page.elements if tag == "span" and attrs.get("class") == "ollama-magic-token"]
    assert [s["title"] for s in spans] == ["Hi: 50%"]
    assert "details" not in page.tags()


def test_hostile_tokens_stay_text() -> None:
    hostile = [
        entry("<script>alert(1)</script>", -0.1, ('"><img src=x onerror=alert(1)>', -3.0)),
        entry("<style>body{display:none}</style>", -0.2),
        entry("javascript:alert(1)", -0.3),
    ]
    markup = TokenProbabilities(hostile).html()
    page = Page(markup)
    assert page.tags() <= {"div", "details", "summary", "span", "br", "b"}
    assert all(not name.startswith("on") for _, attrs in page.elements for name in attrs)
    assert "&lt;script&gt;" in markup and "<script" not in markup and "<style" not in markup
    assert page.summaries[0] == "<script>alert(1)</script>"


def test_plain_text_for_terminals_escapes_control_characters() -> None:
    plain = TokenProbabilities([entry("\x1b[2J", 0.0), entry(" ok", ln(0.5))]).plain()
    assert "\x1b" not in plain
    assert plain.startswith("⟨100%⟩ ok⟨50%⟩\n— token probabilities: 2 tokens · mean probability 75%")


def test_malformed_entries_are_skipped_not_fatal() -> None:
    view = TokenProbabilities([{"token": "a", "logprob": "nan?"}, "junk", {"token": "b", "top_logprobs": [None, 3]}])  # type: ignore[list-item]
    assert [(t.token, t.probability) for t in view.tokens] == [("a", 0.0), ("b", 0.0)]


def test_the_cell_shows_the_view_under_the_answer_when_probabilities_came(nb: Any, fake: FakeOllama) -> None:
    fake.stream(
        chunk("Hey", logprobs=[entry("Hey", ln(0.8), ("Hey", ln(0.8)), ("Hi", ln(0.1)))]),
        chunk(" now", logprobs=[entry(" now", ln(0.4))]),
        final([1]),
    )
    assert run(nb, "%%generate -m tiny --logprobs 2\nHi").success
    answer, view = nb.publisher.messages[-2]["data"], nb.publisher.messages[-1]["data"]
    assert "Hey now" in answer["text/html"]
    assert 'class="ollama-magic-logprobs"' in view["text/html"]
    assert Page(view["text/html"]).summaries == ["Hey"]
    assert view["text/plain"].startswith("Hey⟨80%⟩ now⟨40%⟩")


def test_no_view_without_probabilities(nb: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply()
    assert run(nb, "%%generate -m tiny --logprobs\nHi").success
    assert all("ollama-magic-logprobs" not in m["data"].get("text/html", "") for m in nb.publisher.messages)
