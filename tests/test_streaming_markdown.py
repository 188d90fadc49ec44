"""Incremental Markdown rendering gives exactly what a whole render gives, at every step.

NotebookView renders each finished block once while an answer streams
(render.StreamingMarkdown); a person must see the same HTML as if the whole text had
been rendered at once.  This differential check compares both on random documents built
from the block constructs that interact (lists, fences, quotes, tables, setext headings,
lazy continuations, link reference definitions), at random prefixes.
"""

from __future__ import annotations

import random

import pytest

from ollama_magic.display import render
from ollama_magic.display.render import StreamingMarkdown, markdown_to_html

LINES = [
    "para text here", "more *emph* and **bold** `code`", "", "", "", "- item", "- item two", "* star item",
    "+ plus", "1. one", "2. two", "3) three", "   indented three", "  two spaces", "    code block", "\tTabbed",
    "> quote", ">", "> - quoted item", "```", "```python", "~~~", "````", "# Heading", "## Sub", "===", "---",
    "***", "___", "| a | b |", "|---|---|", "| 1 | 2 |", "a | b", "--|--", "x = [1, 2]", "Text after",
    "  - nested", "     deep", "<div>html</div>", "&amp; entity", "line with trailing  ", "~~strike~~", "\\",
    "1.", "-", "*", "10. ten", "[link](http://x)", "<http://auto>", "lazy continuation", "[ref]: http://r",
    "[ref]", "> [q]: /u", "x[0]: y", "***bold***", "<script>alert(1)</script>",
    "![img](http://i/x.png)", "![r][ref]", "[![b](http://i/b)](http://l)",
]  # fmt: skip


@pytest.mark.parametrize(("seed", "parse_chunk"), [(1, None), (2, None), (3, 64)])
def test_incremental_render_equals_whole_render(
    seed: int, parse_chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parse_chunk is not None:
        monkeypatch.setattr(render, "_PARSE_CHUNK", parse_chunk)
    rng = random.Random(seed)
    for _ in range(250):
        text = "\n".join(rng.choice(LINES) for _ in range(rng.randint(1, 40)))
        if rng.random() < 0.5:
            text += "\n"
        streaming = StreamingMarkdown()
        pos = 0
        while pos < len(text):
            pos = min(len(text), pos + rng.randint(1, 40))
            prefix = text[:pos]
            assert streaming.render(prefix) == markdown_to_html(prefix), prefix


def test_a_different_text_starts_over() -> None:
    streaming = StreamingMarkdown()
    streaming.render("first para\n\nsecond para\n\nthird")
    assert streaming.render("other\n\ntext") == markdown_to_html("other\n\ntext")


def test_finished_blocks_are_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    streaming = StreamingMarkdown()
    text = "".join(f"paragraph {i}\n\n" for i in range(200))
    streaming.render(text)
    parsed: list[int] = []
    original = render._markdown.parse

    def counting_parse(src: str, env: dict) -> list:  # type: ignore[type-arg]
        parsed.append(len(src))
        return original(src, env)

    monkeypatch.setattr(render._markdown, "parse", counting_parse)
    streaming.render(text + "one more line")
    assert sum(parsed) < 100  # only the tail, not the 3 kB already rendered
