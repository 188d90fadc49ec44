"""Conversations continued from their messages, as the real server (Ollama 0.9.3) sees them.

The reference for what a turn should carry is the server itself: the same messages posted
straight to ``/api/chat`` (no ollama_magic) give the ``prompt_eval_count`` the turn must
show, and it is larger than the prompt alone ("hi" -> 4), so the second request carried
the first turn.  The server's log (``serve.log`` of scripts/local-ollama) shows which
endpoint each request went to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jupyter_client.manager import start_new_kernel

from .conftest import LONG, SHORT
from .support import HEY, ollama_server_dir, run, url
from .test_learner_helpers_e2e import Kernel
from .test_notebook_e2e import install_kernelspec

FRESH = 4  # prompt_eval_count of "hi" with nothing before it


def raw_chat(host: str, model: str, messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    """POST /api/chat directly, non-streamed: the reference answer."""
    response = requests.post(
        f"{url(host)}/api/chat", json={"model": model, "messages": messages, "stream": False, **body}, timeout=120
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def turn(shell: Any, line: str = "", prompt: str = "hi", cell_id: str | None = None) -> Any:
    shell.user_ns.pop("r", None)
    outcome = run(shell, f"%%generate {line} -o r\n{prompt}", cell_id=cell_id)
    assert outcome.success, outcome.error_in_exec
    return shell.user_ns["r"]


def log_lines(host: str) -> list[str]:
    """The request lines of the server's log so far (empty for a server not started by the script)."""
    folder = ollama_server_dir(host)
    if folder is None or not (folder / "serve.log").exists():
        return []
    return [line for line in (folder / "serve.log").read_text(errors="replace").splitlines() if "[GIN]" in line]


def endpoints(lines: list[str]) -> list[str]:
    return [m.group(1) for m in (re.search(r'POST\s+"(/api/\w+)"', line) for line in lines) if m]


def test_a_thread_in_messages_mode_continues_through_chat_with_the_real_model(real_host: str, real_ip: Any) -> None:
    before = len(log_lines(real_host))
    first = turn(real_ip, f"-m {SHORT} --conversation messages --thread m")
    second = turn(real_ip, f"-m {SHORT} --conversation messages --thread m")
    assert first.text == second.text == HEY
    assert first.request["messages"] == [{"role": "user", "content": "hi"}]
    expected = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": HEY},
        {"role": "user", "content": "hi"},
    ]
    assert second.request["messages"] == expected
    assert "context" not in second.request and second.context is None
    reference = raw_chat(real_host, SHORT, expected)
    assert first.stats.prompt_eval_count == FRESH
    # The server evaluated the first turn too: exactly what the same messages cost when posted directly.
    assert second.stats.prompt_eval_count == reference["prompt_eval_count"] > FRESH
    assert second.messages == [*expected, {"role": "assistant", "content": HEY}]
    lines = log_lines(real_host)
    if lines:  # a server started by scripts/local-ollama: its log shows where each request went
        assert endpoints(lines[before:])[:2] == ["/api/chat", "/api/chat"]


def test_a_thread_moves_from_context_to_messages_when_another_model_continues_it(real_host: str, real_nb: Any) -> None:
    first = turn(real_nb, f"-m {SHORT} --thread move")
    assert first.context and "messages" not in first.request  # the context while the server gives one
    switched = turn(real_nb, f"-m {LONG} --num-predict 8 --thread move")
    expected = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": HEY},
        {"role": "user", "content": "hi"},
    ]
    assert switched.request["messages"] == expected
    reference = raw_chat(real_host, LONG, expected, options={"num_predict": 8})
    assert switched.stats.prompt_eval_count == reference["prompt_eval_count"] > FRESH
    note = f"{LONG} continued {SHORT}'s conversation (from its messages: token ids do not carry across models)"
    assert switched.notes == [note]
    assert f"\n  {note}" in real_nb.publisher.final["text/plain"]
    third = turn(real_nb, f"-m {LONG} --num-predict 8 --thread move")  # and it keeps going
    assert [m["content"] for m in third.request["messages"]] == ["hi", HEY, "hi", switched.text, "hi"]
    assert third.stats.prompt_eval_count > switched.stats.prompt_eval_count
    assert third.notes == []  # the switch was said once


def test_a_context_thread_continues_from_its_messages_when_asked(real_host: str, real_ip: Any) -> None:
    first = turn(real_ip, f"-m {SHORT} --thread asked")
    second = turn(real_ip, f"-m {SHORT} --thread asked")
    assert second.request["context"] == first.context
    third = turn(real_ip, f"-m {SHORT} --thread asked --conversation messages")
    expected = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": HEY}] * 2
    assert third.request["messages"] == [*expected, {"role": "user", "content": "hi"}]
    reference = raw_chat(real_host, SHORT, third.request["messages"])
    assert third.stats.prompt_eval_count == reference["prompt_eval_count"] > second.stats.prompt_eval_count


@pytest.fixture
def kernel(real_host: str, tmp_path: Path) -> Iterator[tuple[Any, Kernel]]:
    install_kernelspec(tmp_path / "jupyter")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OLLAMA_HOST", real_host)
        mp.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        yield manager, Kernel(client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def printed(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


def test_save_restart_the_kernel_load_and_the_next_turn_carries_the_saved_turns(
    real_host: str, kernel: tuple[Any, Kernel], tmp_path: Path
) -> None:
    manager, k = kernel
    path = tmp_path / "lesson.json"
    setup = (
        "%load_ext ollama_magic\n%config GenerateMagics.conversation = 'messages'\n"
        f"%config GenerateMagics.model = '{SHORT}'\n%config GenerateMagics.host = '{real_host}'"
    )
    assert k.run(setup)[0]["status"] == "ok"
    assert k.run("%%generate --thread lesson\nhi")[0]["status"] == "ok"
    reply, outputs = k.run(f"%ollama save lesson {path}")
    assert reply["status"] == "ok" and "Saved thread 'lesson' (1 turn(s))" in printed(outputs)
    manager.restart_kernel(now=True)
    k.client.wait_for_ready(timeout=120)
    assert k.run(setup)[0]["status"] == "ok"
    reply, outputs = k.run(f"%ollama load {path}")
    assert reply["status"] == "ok" and "Loaded thread 'lesson': 1 turn(s)" in printed(outputs), outputs
    reply, outputs = k.run("%%generate --thread lesson -o r\nhi")
    assert reply["status"] == "ok", outputs
    reply, outputs = k.run("import json; print(json.dumps([r.request['messages'], r.stats.prompt_eval_count]))")
    messages, count = json.loads(printed(outputs))
    expected = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": HEY},
        {"role": "user", "content": "hi"},
    ]
    assert messages == expected
    assert count == raw_chat(real_host, SHORT, expected)["prompt_eval_count"] > FRESH


@pytest.mark.real_model
def test_the_real_model_continues_a_conversation_from_its_messages(
    real_host: str, real_nb: Any, real_model: str
) -> None:
    """smollm2 has a real chat template (``.Messages``): the turns are rendered as a chat."""
    line = f"-m {real_model} -t 0 --seed 1 --num-predict 30 --thread chat --conversation messages"
    one = turn(real_nb, line, "My name is Ada. Say hello to me.")
    two = turn(real_nb, line, "What is my name?")
    assert one.text.strip() and two.text.strip()
    assert [m["role"] for m in two.request["messages"]] == ["user", "assistant", "user"]
    assert two.request["messages"][1]["content"] == one.text
    # The server read the whole first turn with the second prompt: its own count says so,
    # and it is what the same messages cost when posted directly.
    assert two.stats.prompt_eval_count > one.stats.prompt_eval_count + one.stats.eval_count
    reference = raw_chat(real_host, real_model, two.request["messages"], options={"num_predict": 1})
    assert two.stats.prompt_eval_count == reference["prompt_eval_count"]
