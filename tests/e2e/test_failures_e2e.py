"""Failures against a real Ollama: one line each, partial answers kept, threads untouched.

Besides the shared server, one test starts a private server of its own (a hard-linked
copy of the shared server's folder, on another port) so that it can really stop it in the
middle of an answer, see the "cannot reach" message, and start it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ollama_magic import OllamaConnectionError, generate

from ..conftest import RecordingPublisher
from .conftest import LONG, SHORT
from .servers import OllamaServer, private_ollamas
from .support import (
    HEY,
    assert_one_line,
    failing_cell,
    free_port,
    ollama_server_dir,
    raw_generate,
    run,
    unload,
    url,
    wait_until,
)

INTERRUPTED = "Interrupted: the answer so far is kept; the conversation is unchanged."


def cell_result(shell: Any, cell: str, name: str) -> Any:
    shell.user_ns.pop(name, None)
    outcome = run(shell, cell)
    assert outcome.success, outcome.error_in_exec
    return shell.user_ns[name]


# -- errors from the shared server -------------------------------------------------------


def test_a_missing_model_is_one_line_saying_how_to_pull_it(real_ip: Any, real_host: str, capsys: Any) -> None:
    seen = failing_cell(real_ip, capsys, "%%generate -m nope\nHi")
    line = assert_one_line(seen)
    assert line == (
        f"ModelNotFoundError: Model 'nope' is not on the Ollama server at {url(real_host)}: "
        "pull it with 'ollama pull nope' (or %ollama pull nope), or see %ollama list for the models you have."
    )


def test_a_port_where_nothing_listens_is_the_unreachable_line(real_ip: Any, capsys: Any) -> None:
    port = free_port()
    seen = failing_cell(real_ip, capsys, f"%generate -m {SHORT} --host 127.0.0.1:{port} Hi")
    line = assert_one_line(seen)
    assert line == (
        f"OllamaConnectionError: Could not reach Ollama at http://127.0.0.1:{port} (from --host): "
        "check --host, or start Ollama there."
    )


def test_a_dead_ollama_host_is_named_in_the_message(real_ip: Any, capsys: Any, monkeypatch: Any) -> None:
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f":{port}")  # read at each request, as Ollama's CLI reads it
    line = assert_one_line(failing_cell(real_ip, capsys, f"%generate -m {SHORT} Hi"))
    assert f"Could not reach Ollama at http://127.0.0.1:{port}" in line


def test_a_timeout_is_one_line(real_ip: Any, real_host: str, capsys: Any) -> None:
    # A cold model takes ~0.25 s to load before the first byte of the answer.
    unload(real_host, SHORT)
    line = assert_one_line(failing_cell(real_ip, capsys, f"%generate -m {SHORT} --no-context --timeout 0.05 hi"))
    assert line.startswith(f"OllamaTimeoutError: Ollama at {url(real_host)} did not answer within ")
    assert "raise it with --timeout" in line


def test_the_timeout_message_names_the_seconds_given(real_ip: Any, real_host: str, capsys: Any) -> None:
    unload(real_host, SHORT)
    line = assert_one_line(failing_cell(real_ip, capsys, f"%generate -m {SHORT} --no-context --timeout 0.05 hi"))
    assert "did not answer within 0.05 s" in line


def test_an_answer_that_ollama_cuts_short_keeps_the_partial_and_the_thread(
    real_nb: Any, real_host: str, capsys: Any
) -> None:
    """Ollama 0.9.3 ends the stream, without its final ``done`` object, after the model
    repeated one token more than 30 times (llm/server.go: "token repeat limit reached").
    The tiny models answer a prompt ending in ':' with '"' forever, so this is a real case.
    """
    r1 = cell_result(real_nb, f"%%generate -m {SHORT} -o r1\nhi", "r1")
    real_nb.publisher.messages.clear()
    line = assert_one_line(failing_cell(real_nb, capsys, f"%%generate -m {SHORT}\nsay:"))
    assert line.startswith(
        f"OllamaResponseError: Ollama at {url(real_host)} ended the answer without its final message: "
        "the model was probably stopped for repeating itself"
    )
    shown = real_nb.publisher.final["text/plain"]
    assert shown == '"' * 31  # kept as it was: the error line is the one message
    r2 = cell_result(real_nb, f"%%generate -m {SHORT} -o r2\nhi", "r2")
    assert r2.request["context"] == r1.context


# -- Ctrl-C ----------------------------------------------------------------------------


class InterruptingPublisher(RecordingPublisher):
    """Records display messages, and raises KeyboardInterrupt (Ctrl-C) at the n-th update."""

    def __init__(self, after_updates: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after_updates = after_updates
        self.fired_at: float | None = None

    def publish(self, data: dict[str, Any], *args: Any, update: bool = False, **kwargs: Any) -> None:
        super().publish(data, *args, update=update, **kwargs)
        updates = sum(1 for m in self.messages if m.get("update") and not m["data"]["text/plain"].startswith("Waiting"))
        main = threading.current_thread() is threading.main_thread()  # not the waiting line's thread
        if update and main and self.fired_at is None and updates >= self.after_updates:
            self.fired_at = time.monotonic()
            raise KeyboardInterrupt


def test_ctrl_c_stops_at_once_keeps_the_partial_text_and_the_thread(real_nb: Any, real_host: str, capsys: Any) -> None:
    t1 = cell_result(real_nb, f"%%generate -m {LONG} --num-predict 5 -o t1\nhi", "t1")
    interrupting = InterruptingPublisher(3, shell=real_nb)
    real_nb.display_pub = interrupting
    try:
        seen = failing_cell(real_nb, capsys, f"%%generate -m {LONG} --num-predict 2000 -o lost\nhi")
    finally:
        real_nb.display_pub = real_nb.publisher
    assert interrupting.fired_at is not None
    stopped_in = time.monotonic() - interrupting.fired_at
    assert assert_one_line(seen) == INTERRUPTED
    kept = real_nb.user_ns.pop("lost")  # -o holds the partial answer, never a stale one
    assert kept.complete is False and kept.error == INTERRUPTED
    partial = interrupting.messages[-1]["data"]["text/plain"]  # the answer so far, no second message
    live = interrupting.messages[-2]["data"]["text/plain"]
    assert partial.startswith(live) and ("Hey now! " * 250).startswith(partial)
    assert kept.text == partial
    assert len(partial) < 2000
    # The server stopped generating (2000 tokens take many seconds here): the next answer
    # comes at once, and it continues t1 exactly as the server would continue it.
    assert stopped_in < 5
    started = time.monotonic()
    t2 = cell_result(real_nb, f"%%generate -m {LONG} --num-predict 5 -o t2\nhi", "t2")
    assert time.monotonic() - started < 5
    assert t2.request["context"] == t1.context
    reference = raw_generate(real_host, model=LONG, prompt="hi", context=t1.context, options={"num_predict": 5})
    assert t2.context == reference["context"]
    assert t2.stats.prompt_eval_count == reference["prompt_eval_count"]


# -- a private server that really stops --------------------------------------------------


@pytest.fixture(scope="module")
def private_server(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    source = ollama_server_dir(real_host)
    if source is None:
        pytest.skip("the folder of the server at OLLAMA_E2E_HOST is unknown: set OLLAMA_E2E_DIR to it")
    root = tmp_path_factory.mktemp("private-ollama")
    try:
        with private_ollamas(source, root) as servers:
            yield servers[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_server_that_stops_mid_answer_then_is_down_then_comes_back(
    private_server: OllamaServer, real_nb: Any, capsys: Any
) -> None:
    host = private_server.host
    first = cell_result(real_nb, f"%%generate -m {SHORT} --host {host} --thread p -o first\nhi", "first")
    assert first.text == HEY

    # The server goes away in the middle of a long answer (SIGTERM to its PID, as `stop` does).
    pid = private_server.pid
    stopped: list[float] = []
    pieces: list[str] = []

    def stop_after_a_few(text: str, thinking: str) -> None:
        if not stopped and len(pieces) >= 5:
            os.kill(pid, signal.SIGTERM)
            stopped.append(time.monotonic())
        pieces.append(text)

    with pytest.raises(OllamaConnectionError) as info:
        generate("hi", LONG, options={"num_predict": 2000}, host=host, on_chunk=stop_after_a_few)
    assert stopped and time.monotonic() - stopped[0] < 10
    message = str(info.value)
    assert message.startswith(f"The connection to Ollama at http://{host} broke") or message.startswith(
        f"The answer from Ollama at http://{host} ended before"
    )
    partial = info.value.partial  # type: ignore[attr-defined]
    assert partial.text == "".join(pieces) and ("Hey now! " * 250).startswith(partial.text)
    assert len(partial.text) >= 5
    assert not partial.complete
    assert wait_until(lambda: not private_server.running(pid), timeout=15)
    private_server.stop()  # the script's own clean-up (pid file, runners)

    # Down: the one line that says what to do.
    line = assert_one_line(failing_cell(real_nb, capsys, f"%%generate -m {SHORT} --host {host} --thread p\nhi"))
    assert line == (
        f"OllamaConnectionError: Could not reach Ollama at http://{host} (from --host): check --host, "
        "or start Ollama there."
    )
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{host}/api/version", timeout=2)

    # Back up: the same session carries on, and the thread continues where it was.
    private_server.start()
    assert private_server.pid != pid
    again = cell_result(real_nb, f"%%generate -m {SHORT} --host {host} --thread p -o again\nhi", "again")
    assert again.text == HEY
    assert again.request["context"] == first.context
