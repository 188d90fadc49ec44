"""``--to-cell``: the answer's first code block (or the whole answer) becomes a new cell below."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import FakeOllama, chunk, final, run


@pytest.fixture
def next_inputs(ip: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """What the magic asks IPython to put in the next cell (in a kernel: an execute_reply payload)."""
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(ip, "set_next_input", lambda text, replace=False: calls.append((text, replace)))
    return calls


ANSWER = "Here you go:\n\n```python\nimport math\nprint(math.pi)\n```\n\nThen:\n\n```\nsecond()\n```\n"


def test_the_first_code_block_goes_into_a_new_cell_below(ip: Any, fake: FakeOllama, next_inputs: list[Any]) -> None:
    fake.stream(chunk(ANSWER), final([1]))
    assert run(ip, "%%generate -m tiny --to-cell -o r\nPrint pi").success
    assert next_inputs == [("import math\nprint(math.pi)", False)]
    assert ip.user_ns["r"].text == ANSWER  # the answer itself is kept and shown as usual


def test_without_a_code_block_the_whole_answer_goes(ip: Any, fake: FakeOllama, next_inputs: list[Any]) -> None:
    fake.reply("x = 1")
    assert run(ip, "%%generate -m tiny --to-cell\nA line of code").success
    assert next_inputs == [("x = 1", False)]


def test_nothing_goes_without_the_option_or_from_a_failed_answer(
    ip: Any, fake: FakeOllama, next_inputs: list[Any]
) -> None:
    fake.stream(chunk(ANSWER), final([1]))
    assert run(ip, "%%generate -m tiny\nPrint pi").success
    fake.stream(chunk("```python\nhalf"), '{"error": "out of memory"}\n')
    assert not run(ip, "%%generate -m tiny --to-cell\nPrint pi").success
    assert next_inputs == []


def test_to_cell_takes_one_model(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    assert not run(ip, "%%generate -m a -m b --to-cell\nHi").success
    assert "--to-cell puts one answer into a new cell: give one -m with it" in capsys.readouterr().err
    assert fake.requests == []
