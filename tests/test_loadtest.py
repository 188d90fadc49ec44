"""The load test's own judgement (benchmarks/loadtest.py): a broken conversation or a
failed turn must be reported as such, or its "zero failures, all intact" means nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "loadtest.py"


@pytest.fixture(scope="module")
def loadtest() -> Any:
    spec = importlib.util.spec_from_file_location("loadtest", PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["loadtest"] = module
    spec.loader.exec_module(module)
    return module


def facts(sent: list[int] | None, context: list[int], prompt_eval_count: int) -> dict[str, Any]:
    return {"request_context": sent, "context": context, "prompt_eval_count": prompt_eval_count, "text": "Hey now!"}


def chain() -> list[dict[str, Any]]:
    """Three turns as the real server returns them for "hi", "and then?", "thanks"."""
    c1, c2 = list(range(11)), list(range(100, 126))
    return [facts(None, c1, 4), facts(c1, c2, 22), facts(c2, list(range(200, 238)), 37)]


def student(loadtest: Any, turns: list[dict[str, Any] | None], error: str | None = None) -> Any:
    s = loadtest.Student(1)
    s.turns = [loadtest.Turn(k, 1.0, error if f is None else None, 0, f) for k, f in enumerate(turns, start=1)]
    return s


def test_a_chained_conversation_is_intact(loadtest: Any) -> None:
    assert student(loadtest, chain()).broken_link() is None


def test_a_turn_not_sent_the_previous_context_breaks_it(loadtest: Any) -> None:
    turns = chain()
    turns[2]["request_context"] = turns[0]["context"]  # sent turn 1's context to turn 3
    assert student(loadtest, turns).broken_link() == "turn 3 was not sent turn 2's context"


def test_a_server_that_ignored_the_context_breaks_it(loadtest: Any) -> None:
    turns = chain()
    turns[1]["prompt_eval_count"] = 11  # only the new prompt: not above the 11 context tokens
    assert student(loadtest, turns).broken_link().startswith("turn 2's prompt_eval_count 11 is not above")


def test_a_first_turn_that_was_sent_a_context_breaks_it(loadtest: Any) -> None:
    turns = chain()
    turns[0]["request_context"] = [1, 2]
    assert "did not start a fresh conversation" in student(loadtest, turns).broken_link()


def test_a_failed_turn_breaks_it(loadtest: Any) -> None:
    turns: list[dict[str, Any] | None] = [*chain()[:2], None]
    assert student(loadtest, turns, "OllamaResponseError: busy").broken_link() == "a turn has no result"


def test_percentiles_are_nearest_rank(loadtest: Any) -> None:
    values = [float(v) for v in range(20, 0, -1)]
    assert [loadtest.percentile(values, q) for q in (50, 95, 100)] == [10.0, 19.0, 20.0]
    assert loadtest.percentile([], 50) != loadtest.percentile([], 50)  # nan


def test_retry_lines_are_counted_once_each(loadtest: Any) -> None:
    shown = [
        "server busy: retry 1 of 6 in 0.8 s",
        "server busy: retry 1 of 6 in 0.8 s",
        "x\nserver busy: retry 2 of 6 in 2.1 s",
    ]
    assert loadtest.retries_in(shown) == 2
    assert loadtest.retries_in(["Hey now!"]) == 0
