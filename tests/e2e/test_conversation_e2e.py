"""Conversations as the real server sees them.

The tiny models' tokenizer makes ``prompt_eval_count`` exact: a turn that continues a
context of N tokens evaluates N + the new prompt's count (see support.py), so the counts
prove what the server was given, not only what the client meant to send.
"""

from __future__ import annotations

from typing import Any

from .conftest import LONG, SHORT
from .support import HEY, contains_run, run

FRESH = 4  # prompt_eval_count of "hi" with nothing before it


def turn(shell: Any, line: str = "", prompt: str = "hi", cell_id: str | None = None) -> Any:
    shell.user_ns.pop("r", None)
    outcome = run(shell, f"%%generate {line} -o r\n{prompt}", cell_id=cell_id)
    assert outcome.success, outcome.error_in_exec
    return shell.user_ns["r"]


def test_three_cells_grow_the_prompt_by_exactly_the_previous_context(real_ip: Any) -> None:
    r1 = turn(real_ip, f"-m {SHORT}")
    r2 = turn(real_ip, f"-m {SHORT}")
    r3 = turn(real_ip, f"-m {SHORT}")
    assert [r.text for r in (r1, r2, r3)] == [HEY] * 3
    assert r1.stats.prompt_eval_count == FRESH
    assert r2.stats.prompt_eval_count == len(r1.context) + FRESH
    assert r3.stats.prompt_eval_count == len(r2.context) + FRESH
    assert r1.stats.prompt_eval_count < r2.stats.prompt_eval_count < r3.stats.prompt_eval_count
    assert contains_run(r2.context, r1.context) and contains_run(r3.context, r2.context)
    assert (r2.request["context"], r3.request["context"]) == (r1.context, r2.context)


def test_new_starts_the_thread_afresh(real_ip: Any) -> None:
    r1 = turn(real_ip, f"-m {SHORT}")
    turn(real_ip, f"-m {SHORT}")
    fresh = turn(real_ip, f"-m {SHORT} --new")
    assert "context" not in fresh.request
    assert fresh.stats.prompt_eval_count == FRESH
    assert fresh.context == r1.context  # the same first turn again
    after = turn(real_ip, f"-m {SHORT}")  # and the thread goes on from the fresh start
    assert after.request["context"] == fresh.context


def test_switching_models_in_context_mode_starts_fresh_and_says_so(real_nb: Any) -> None:
    real_nb.run_line_magic("config", "GenerateMagics.conversation = 'context'")
    turn(real_nb, f"-m {SHORT}")
    second = turn(real_nb, f"-m {SHORT}")
    switched = turn(real_nb, f"-m {LONG} --num-predict 8")
    assert "context" not in switched.request
    assert switched.stats.prompt_eval_count == FRESH  # the same template: "hi" alone
    note = f"new conversation: the context of {SHORT} cannot continue with {LONG}"
    assert switched.notes == [note]
    assert f"\n  {note}" in real_nb.publisher.final["text/plain"]  # on its own line, under the footer
    back = turn(real_nb, f"-m {SHORT}")  # the thread is tiny-long's now: back to tiny is fresh too
    assert "context" not in back.request and back.stats.prompt_eval_count == FRESH
    assert back.context != second.context


def test_the_same_model_with_its_tag_continues_the_thread(real_ip: Any) -> None:
    first = turn(real_ip, f"-m {SHORT}")
    second = turn(real_ip, f"-m {SHORT}:latest")
    assert second.request.get("context") == first.context


def test_threads_are_separate_and_no_context_touches_none(real_ip: Any) -> None:
    a1 = turn(real_ip, f"-m {SHORT} --thread a")
    b1 = turn(real_ip, f"-m {SHORT} --thread b")
    alone = turn(real_ip, f"-m {SHORT} --no-context")
    a2 = turn(real_ip, f"-m {SHORT} --thread a")
    assert b1.stats.prompt_eval_count == FRESH
    assert "context" not in alone.request and alone.thread is None
    assert alone.stats.prompt_eval_count == FRESH
    assert a2.request["context"] == a1.context
    assert a2.stats.prompt_eval_count == len(a1.context) + FRESH


def test_rerunning_a_cell_branches_from_where_it_first_started(real_ip: Any) -> None:
    r1 = turn(real_ip, f"-m {SHORT}", cell_id="c1")
    r2 = turn(real_ip, f"-m {SHORT}", cell_id="c2")
    turn(real_ip, f"-m {SHORT}", cell_id="c3")
    again = turn(real_ip, f"-m {SHORT}", cell_id="c2")  # the person re-runs c2
    assert again.request["context"] == r1.context
    assert again.context == r2.context  # the server gave the same answer from the same point
    assert again.stats.prompt_eval_count == r2.stats.prompt_eval_count
