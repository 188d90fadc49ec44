"""generate_many: order, failures, retries, Ctrl-C and the cache, against a threaded fake Ollama.

The fake answers each prompt from its text (``echo`` the prompt back, after a random
delay), so answers arriving out of order under concurrency are noticed.  Prompt words
script the faults: ``fail`` → HTTP 500, ``hang`` → a slow endless stream (and the main
thread is interrupted once it started), ``badjson`` → an answer that fails a schema.
"""

from __future__ import annotations

import _thread
import io
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from ollama_magic import BatchInterrupted, BatchResults, InvalidRequestError, generate_many
from ollama_magic.batch.cache import ResultCache, request_key
from ollama_magic.batch.runner import NOT_RUN, status

from .conftest import run
from .echo_server import EchoOllama, serve

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def echo() -> Iterator[EchoOllama]:
    with serve() as server:
        yield server


def test_results_come_back_in_input_order_under_concurrency(echo: EchoOllama) -> None:
    prompts = [f"item {i}" for i in range(40)]
    results = generate_many(prompts, "tiny", host=echo.host, concurrency=4, progress=False)
    assert isinstance(results, BatchResults)
    assert [r.text for r in results] == [f"echo: item {i}" for i in range(40)]
    assert echo.most_in_flight > 1  # really concurrent
    assert echo.most_in_flight <= 4
    assert sorted(echo.prompts) == sorted(prompts)  # each sent once
    assert results.summary().startswith("40 items · 40 done · 0 failed")


def test_concurrency_one_sends_one_at_a_time(echo: EchoOllama) -> None:
    generate_many([f"p{i}" for i in range(6)], "tiny", host=echo.host, concurrency=1, progress=False)
    assert echo.most_in_flight == 1


def test_a_failed_item_carries_its_error_and_does_not_stop_the_batch(echo: EchoOllama) -> None:
    prompts = ["a", "please fail", "b", "fail again", "c"]
    results = generate_many(prompts, "tiny", host=echo.host, progress=False)
    assert [status(r) for r in results] == ["ok", "failed", "ok", "failed", "ok"]
    assert results[1].complete is False
    assert "HTTP 500: the model crashed" in (results[1].error or "")
    assert results.failed == [1, 3]
    summary = results.summary()
    assert "2 failed (2 × Ollama answered HTTP 500: the model crashed)" in summary
    assert "3 done" in summary


def test_a_bad_item_fails_alone_and_bad_arguments_send_nothing(echo: EchoOllama, tmp_path: Path) -> None:
    results = generate_many(
        ["ok", {"prompt": "with a missing image", "images": [str(tmp_path / "nope.png")]}],
        "tiny",
        host=echo.host,
        progress=False,
    )
    assert [status(r) for r in results] == ["ok", "failed"]
    assert "Image file not found" in (results[1].error or "")
    before = len(echo.prompts)
    with pytest.raises(InvalidRequestError, match="No model"):
        generate_many(["a", "b"], host=echo.host, progress=False)
    with pytest.raises(InvalidRequestError, match="keys generate"):
        generate_many(["a", {"prompt": "b", "colour": "red"}], "tiny", host=echo.host, progress=False)
    with pytest.raises(InvalidRequestError, match="concurrency"):
        generate_many(["a"], "tiny", host=echo.host, concurrency=0, progress=False)
    with pytest.raises(Exception, match="JSON"):
        generate_many(["a"], "tiny", host=echo.host, format="{not json", progress=False)
    assert len(echo.prompts) == before


def test_busy_retries_pass_through_to_the_engine(echo: EchoOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    from ollama_magic.engine import busy

    monkeypatch.setattr(busy, "wait", lambda seconds, stop=None: False)  # a batch's waits can be stopped
    results = generate_many(["busy a", "b"], "tiny", host=echo.host, busy_retries=2, progress=False)
    assert [r.text for r in results] == ["echo: busy a", "echo: b"]
    assert results[0].busy_retries == 1
    assert "1 busy-server retries" in results.summary()
    refused = generate_many(["busy c"], "tiny", host=echo.host, busy_retries=0, progress=False)
    assert status(refused[0]) == "failed" and "503" in (refused[0].error or "")


def test_the_model_may_come_from_ollama_magic_model(echo: EchoOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAGIC_MODEL", "tiny")
    results = generate_many(["a", {"prompt": "b", "model": "other"}], host=echo.host, progress=False)
    assert [r.request["model"] for r in results] == ["tiny", "other"]


def test_items_may_be_dicts_of_generate_keywords(echo: EchoOllama) -> None:
    results = generate_many(
        [{"prompt": "x", "system": "be brief", "options": {"seed": 2}}, "y"],
        "tiny",
        host=echo.host,
        options={"temperature": 0, "seed": 1},
        progress=False,
    )
    assert results[0].request["system"] == "be brief"
    assert results[0].request["options"] == {"temperature": 0, "seed": 2}
    assert results[1].request["options"] == {"temperature": 0, "seed": 1}


def test_schema_validation_and_retries_apply_per_item(echo: EchoOllama) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    results = generate_many(["goodjson", "badjson"], "tiny", host=echo.host, format=schema, retries=2, progress=False)
    assert results[0].data == {"n": 1}
    assert status(results[1]) == "invalid"
    assert results[1].errors
    assert sum("badjson" in p for p in echo.prompts) == 3  # first try + 2 retries
    assert "1 failed (1 × the answer does not match the schema)" in results.summary()


def test_ctrl_c_stops_at_once_keeps_finished_items_and_closes_open_requests(echo: EchoOllama) -> None:
    echo.interrupt_on_hang = True
    echo.interrupt_after = 3  # a, b and c answered: the interrupt comes while "hang" is open
    prompts = ["a", "b", "c", "hang here", *[f"later {i}" for i in range(30)]]
    with pytest.raises(BatchInterrupted) as caught:
        generate_many(prompts, "tiny", host=echo.host, concurrency=2, progress=False)
    results = caught.value.results
    assert len(results) == len(prompts)
    assert results.interrupted
    assert [r.text for r in results[:3]] == ["echo: a", "echo: b", "echo: c"]
    assert results[3].error == NOT_RUN and not results[3].complete
    assert status(results[-1]) == "not run"
    assert echo.closed.wait(5)  # the server saw the hanging request's connection close
    assert len(echo.prompts) < len(prompts)  # the rest were never sent
    assert "not run" in str(caught.value)
    assert "not run (interrupted)" in results.summary()


def test_ctrl_c_while_waiting_for_the_first_token_closes_the_connection(echo: EchoOllama) -> None:
    """Before any text arrives there is no chunk to notice the stop: the socket is shut instead."""
    release = threading.Event()
    arrived: list[str] = []
    lock = threading.Lock()

    def silent(request: Request) -> Response:
        with lock:
            arrived.append(request.get_json()["prompt"])
            last = len(arrived) == 2
        if last:  # both workers wait on a silent socket: one Ctrl-C, exactly once
            echo.hanging.set()
            _thread.interrupt_main()
        release.wait(20)  # sends nothing, like a busy server queueing the request
        return Response("", status=500)

    echo.server.clear()
    echo.server.expect_request("/api/generate", method="POST").respond_with_handler(silent)
    with pytest.raises(BatchInterrupted):
        generate_many(["one", "two"], "tiny", host=echo.host, concurrency=2, progress=False)
    # Both workers were blocked reading a silent socket; shutting it woke them at once
    # (without it they would still be waiting for the server, which is held until release).
    alive = [t.name for t in threading.enumerate() if t.name.startswith("ollama-batch")]
    answered = release.is_set()
    release.set()
    assert alive == [] and not answered
    assert sorted(arrived) == ["one", "two"]


# -- the cache ------------------------------------------------------------------------


def test_a_rerun_is_served_from_the_cache_and_sends_only_the_missing_items(echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    first = generate_many(["a", "b", "fail c"], "tiny", host=echo.host, cache=path, progress=False)
    assert [status(r) for r in first] == ["ok", "ok", "failed"]
    assert len(echo.prompts) == 3
    second = generate_many(["a", "b", "fail c", "d"], "tiny", host=echo.host, cache=path, progress=False)
    assert sorted(echo.prompts[3:]) == ["d", "fail c"]  # the failed item was not cached: asked again
    assert [status(r) for r in second] == ["cached", "cached", "failed", "ok"]
    assert second[0].text == "echo: a" and second[0].cached
    assert second.from_cache == 2
    assert "(2 from cache)" in second.summary()


def test_the_key_covers_every_field_and_a_changed_model_digest_misses(echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    generate_many(["a"], "tiny", host=echo.host, cache=path, progress=False)
    generate_many(["a"], "tiny", host=echo.host, cache=path, system="other", progress=False)
    generate_many(["a"], "tiny", host=echo.host, cache=path, options={"seed": 3}, progress=False)
    assert len(echo.prompts) == 3  # each different request was sent
    generate_many(["a"], "tiny:latest", host=echo.host, cache=path, keep_alive="1m", progress=False)
    assert len(echo.prompts) == 3  # same model, keep_alive does not change the answer: a hit
    echo.digest = "sha256:bbb"  # the model was pulled again
    again = generate_many(["a"], "tiny", host=echo.host, cache=path, progress=False)
    assert len(echo.prompts) == 4 and not again[0].cached


def test_the_digest_check_reaches_a_server_behind_a_token(echo: EchoOllama, tmp_path: Path) -> None:
    """The digest probe carries the batch's headers: a re-pulled model on a server that
    wants a token is still noticed (a probe without it would get 401 and check nothing)."""
    path = tmp_path / "answers.sqlite"
    echo.token = "s3cret"
    auth = {"Authorization": "Bearer s3cret"}
    generate_many(["a"], "tiny", host=echo.host, cache=path, headers=auth, progress=False)
    assert echo.tags_calls == 1 and len(echo.prompts) == 1
    echo.digest = "sha256:bbb"  # the model was pulled again
    again = generate_many(["a"], "tiny", host=echo.host, cache=path, headers=auth, progress=False)
    assert echo.tags_calls == 2 and len(echo.prompts) == 2 and not again[0].cached


def test_a_cell_cache_checks_the_digest_with_the_configured_headers(ip: Any, echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    echo.token = "s3cret"
    run(ip, "%config GenerateMagics.headers = {'Authorization': 'Bearer s3cret'}")
    cell = f"%%generate -m tiny --host {echo.host} --no-context --cache {path}\nHi"
    assert run(ip, cell).success and run(ip, cell).success
    assert len(echo.prompts) == 1  # the second run came from the cache
    echo.digest = "sha256:bbb"
    assert run(ip, cell).success
    assert len(echo.prompts) == 2 and echo.tags_calls == 3


def test_the_cache_serves_when_the_server_is_down(echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    generate_many(["a", "b"], "tiny", host=echo.host, cache=path, progress=False)
    echo.server.stop()
    results = generate_many(["a", "b", "c"], "tiny", host=echo.host, cache=path, progress=False, timeout=5)
    assert [status(r) for r in results] == ["cached", "cached", "failed"]
    assert "Could not reach Ollama" in (results[2].error or "")


def test_an_interrupted_batch_resumes_from_the_cache(echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    echo.interrupt_on_hang = True
    prompts = ["a", "b", "hang", "c"]
    with pytest.raises(BatchInterrupted) as caught:
        generate_many(prompts, "tiny", host=echo.host, cache=path, concurrency=1, progress=False)
    kept = [status(r) for r in caught.value.results]
    assert kept == ["ok", "ok", "not run", "not run"]
    echo.interrupt_on_hang = False
    sent = len(echo.prompts)
    resumed = generate_many(["a", "b", "c"], "tiny", host=echo.host, cache=path, progress=False)
    assert [status(r) for r in resumed] == ["cached", "cached", "ok"]
    assert echo.prompts[sent:] == ["c"]


def test_two_processes_share_one_cache_file(echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    script = (
        "import sys; from ollama_magic import generate_many\n"
        "r = generate_many([f'p{i}' for i in range(int(sys.argv[2]), int(sys.argv[3]))], 'tiny', "
        "host=sys.argv[1], cache=sys.argv[4], concurrency=4, progress=False)\n"
        "assert not r.failed, r.summary(); print(len(r))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, echo.host, str(lo), str(hi), str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lo, hi in ((0, 60), (30, 90))  # overlapping: both may write the same keys
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 90
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sent = len(echo.prompts)
    again = generate_many([f"p{i}" for i in range(90)], "tiny", host=echo.host, cache=path, progress=False)
    assert again.from_cache == 90 and len(echo.prompts) == sent


def test_cache_info_clear_and_a_bad_file(tmp_path: Path) -> None:
    from ollama_magic import CacheError, GenerationResult

    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        result = GenerationResult(text="hi", model="tiny:latest", context=[1, 2])
        assert cache.put(request_key({"model": "tiny", "prompt": "x"}), result)
        failed = GenerationResult(text="", model="tiny", complete=False, error="boom")
        assert not cache.put(request_key({"model": "tiny", "prompt": "y"}), failed)
        info = cache.info()
        assert info["entries"] == 1 and info["models"] == {"tiny:latest": 1}
        hit = cache.get(request_key({"model": "tiny:latest", "prompt": "x"}))
        assert hit is not None and hit.text == "hi" and hit.context == [1, 2] and hit.cached
        assert cache.clear() == 1
        assert cache.info()["entries"] == 0
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database " * 100)
    with pytest.raises(CacheError, match="Cannot use"):
        ResultCache(junk)
    with pytest.raises(CacheError, match="does not exist"):
        ResultCache(tmp_path / "no" / "such" / "dir.sqlite")


# -- progress -------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def start(self, state: Any) -> None:
        self.calls.append(("start", state.done, state.total))

    def update(self, state: Any) -> None:
        self.calls.append(("update", state.done, state.failed))

    def finish(self, state: Any, results: BatchResults) -> None:
        self.calls.append(("finish", state.done, state.failed))


def test_progress_sees_start_updates_and_the_end(echo: EchoOllama) -> None:
    echo.max_delay = 0.1
    recorder = Recorder()
    generate_many([f"x{i}" for i in range(12)] + ["fail"], "tiny", host=echo.host, progress=recorder)
    assert recorder.calls[0] == ("start", 0, 13)
    assert recorder.calls[-1] == ("finish", 13, 1)
    done = [c[1] for c in recorder.calls]
    assert done == sorted(done)  # never goes backwards


def test_terminal_progress_writes_a_summary_line(echo: EchoOllama, capsys: Any) -> None:
    generate_many(["a", "fail"], "tiny", host=echo.host)
    err = capsys.readouterr().err
    assert "— 2 items · 1 done · 1 failed" in err


def test_a_terminal_sees_one_progress_line_rewritten_a_log_only_the_summary(echo: EchoOllama) -> None:
    from ollama_magic.batch.view import TerminalProgress

    from .conftest import TerminalScreen

    screen, log = TerminalScreen(), io.StringIO()
    for out in (screen, log):
        generate_many(
            [f"item {i}" for i in range(4)], "m", host=echo.host, progress=TerminalProgress(out, interval=0.0)
        )
    live, summary = screen.getvalue().split("\n", 1)
    assert live.startswith("\r") and live.count("\r") >= 2  # the same line, drawn again in place
    assert "4 / 4" in live.rsplit("\r", 1)[-1]
    assert "\r" not in log.getvalue()  # a log gets no redrawn line, only the summary
    for text in (summary, log.getvalue()):
        assert text.startswith("— 4 items · 4 done · 0 failed"), text
