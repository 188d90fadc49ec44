"""A busy server (HTTP 503/429 before any text) is asked again, visibly, and then given up on.

The waits are recorded instead of slept (``ollama_magic.engine.busy.sleep`` is replaced), so
these tests take no time; the e2e test in tests/e2e/test_busy_e2e.py shows a real Ollama
with a full queue and a real wait.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import pytest
from werkzeug.wrappers import Response

from ollama_magic import OllamaResponseError, busy, generate
from ollama_magic.engine.errors import OllamaBusyError
from ollama_magic.widgets.panel import GeneratePanel

from .conftest import FakeOllama, chunk, final, run

BUSY = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the client would sleep, recorded instead of slept (also the waits of a
    request that can be stopped, as the panel's are: those report whether it was)."""
    recorded: list[float] = []

    def stoppable(seconds: float, stop: Any = None) -> bool:
        recorded.append(seconds)
        return stop is not None and stop.is_set()

    monkeypatch.setattr(busy, "sleep", recorded.append)
    monkeypatch.setattr(busy, "wait", stoppable)
    return recorded


def busy_answer(fake: FakeOllama, status: int = 503, retry_after: str | None = None, message: str = BUSY) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    fake.answers.append(
        lambda body: Response(
            json.dumps({"error": message}), status=status, mimetype="application/json", headers=headers
        )
    )


def error_output(shell: Any, capsys: Any, cell: str) -> str:
    capsys.readouterr()
    result = run(shell, cell)
    assert not result.success
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_the_default_is_about_a_minute_of_waiting() -> None:
    # docs/busy-servers.md says: 6 retries, nominal waits 1, 2, 4, 8, 16, 30 s = 61 s.
    assert busy.DEFAULT_RETRIES == 6
    assert busy.schedule(busy.DEFAULT_RETRIES) == [1, 2, 4, 8, 16, 30]
    assert 55 <= sum(busy.schedule(busy.DEFAULT_RETRIES)) <= 65


def test_two_busy_answers_then_the_answer_arrives_once(fake: FakeOllama, waits: list[float]) -> None:
    busy_answer(fake)
    busy_answer(fake)
    fake.reply("Hey now!", context=[7])
    seen: list[busy.BusyRetry] = []
    result = generate("hi", "tiny", host=fake.host, on_retry=seen.append)
    assert result.text == "Hey now!" and result.context == [7]
    assert result.busy_retries == 2
    assert len(fake.requests) == 3
    assert fake.requests[0] == fake.requests[2]  # the same request, sent again
    assert [(r.number, r.total, r.status) for r in seen] == [(1, 6, 503), (2, 6, 503)]
    assert [r.wait for r in seen] == waits
    assert 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0  # jittered 1 s, 2 s
    assert seen[0].reason == BUSY.replace("  ", " ")
    assert seen[1].message() == f"server busy: retry 2 of 6 in {waits[1]:.1f} s"


def test_the_waits_are_jittered_so_a_class_does_not_come_back_in_lockstep() -> None:
    draws = {round(busy.wait_before(3, None), 3) for _ in range(50)}
    assert len(draws) > 10
    assert all(2.0 <= d <= 6.0 for d in draws)


def test_retry_after_in_seconds_is_honoured(fake: FakeOllama, waits: list[float]) -> None:
    busy_answer(fake, retry_after="7")
    fake.reply()
    generate("hi", "tiny", host=fake.host)
    assert 7.0 <= waits[0] <= 7.0 * 1.2


def test_retry_after_as_an_http_date_is_honoured(fake: FakeOllama, waits: list[float]) -> None:
    busy_answer(fake, status=429, retry_after=email.utils.formatdate(time.time() + 20, usegmt=True))
    fake.reply()
    seen: list[busy.BusyRetry] = []
    generate("hi", "tiny", host=fake.host, on_retry=seen.append)
    assert 18.0 <= waits[0] <= 20.0 * 1.2
    assert seen[0].message().startswith("rate limited: retry 1 of 6 in ")


def test_a_server_that_stays_busy_is_one_final_line(nb: Any, fake: FakeOllama, waits: list[float], capsys: Any) -> None:
    for _ in range(3):
        busy_answer(fake)
    seen = error_output(nb, capsys, "%%generate -m tiny --busy-retries 2\nHi")
    lines = [line for line in seen.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in seen
    assert lines[0].startswith(f"OllamaBusyError: Ollama at http://{fake.host} was still busy after 2 retries over ")
    assert f"(HTTP 503: {BUSY.replace('  ', ' ')}): try again later" in lines[0]
    assert "--busy-retries N" in lines[0]
    assert len(fake.requests) == 3 and len(waits) == 2
    # The cell showed each wait in place, then that it gave up (not a stale "retry 2 of 2").
    statuses = [m["data"]["text/plain"].splitlines()[-1:] for m in nb.publisher.messages]
    assert [f"server busy: retry 1 of 2 in {waits[0]:.1f} s"] in statuses
    assert [f"server busy: retry 2 of 2 in {waits[1]:.1f} s"] in statuses
    assert nb.publisher.messages[-1]["update"]
    # Then the line goes: the error under the cell says it gave up, once.
    assert statuses[-1] == []


def test_the_config_setting_and_zero_retries(ip: Any, fake: FakeOllama, waits: list[float], capsys: Any) -> None:
    ip.run_line_magic("config", "GenerateMagics.busy_retries = 0")
    busy_answer(fake)
    seen = error_output(ip, capsys, "%%generate -m tiny\nHi")
    assert f"OllamaBusyError: Ollama at http://{fake.host} is busy (HTTP 503: server busy" in seen
    assert "let it retry with --busy-retries N" in seen
    assert len(fake.requests) == 1 and waits == []
    ip.run_line_magic("config", "GenerateMagics.busy_retries = 1")
    busy_answer(fake)
    fake.reply()
    capsys.readouterr()
    assert run(ip, "%%generate -m tiny -o r\nHi").success
    assert ip.user_ns["r"].busy_retries == 1
    assert capsys.readouterr().out.startswith(f"[server busy: retry 1 of 1 in {waits[0]:.1f} s]\nHey now!")


def test_a_negative_count_is_a_usage_error(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    seen = error_output(ip, capsys, "%%generate -m tiny --busy-retries -1\nHi")
    assert "UsageError: --busy-retries must be 0 or more." in seen
    assert fake.requests == []
    with pytest.raises(ValueError, match="busy_retries"):
        generate("hi", "tiny", host=fake.host, busy_retries=-1)


def test_a_failure_after_text_has_arrived_is_never_retried(fake: FakeOllama, waits: list[float]) -> None:
    # Text was shown; an error inside the stream (even one saying "busy") must not resend
    # the request, or the text would appear twice.
    fake.stream(chunk("Hey"), {"error": BUSY})
    with pytest.raises(OllamaResponseError) as info:
        generate("hi", "tiny", host=fake.host)
    assert not isinstance(info.value, OllamaBusyError)
    assert info.value.partial.text == "Hey"  # type: ignore[attr-defined]
    assert len(fake.requests) == 1 and waits == []


def test_other_errors_are_not_retried(fake: FakeOllama, waits: list[float]) -> None:
    fake.error(500, "model runner crashed")
    with pytest.raises(OllamaResponseError, match="HTTP 500: model runner crashed"):
        generate("hi", "tiny", host=fake.host)
    assert len(fake.requests) == 1 and waits == []


def test_ctrl_c_during_a_wait_is_a_calm_interrupt(nb: Any, fake: FakeOllama, monkeypatch: Any, capsys: Any) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(busy, "sleep", interrupted)
    busy_answer(fake)
    fake.reply()
    seen = error_output(nb, capsys, "%%generate -m tiny\nHi")
    assert seen.strip() == "Interrupted before the answer began; the conversation is unchanged."
    assert nb.publisher.final["text/plain"] == ""  # the "retry in ..." line went: no retry will come
    assert len(fake.requests) == 1


def test_a_structured_retry_is_a_new_request_and_busy_retries_apply_to_each(
    fake: FakeOllama, waits: list[float]
) -> None:
    fake.reply('{"a": "x"}')
    busy_answer(fake)
    fake.reply('{"a": 1}')
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    result = generate("hi", "tiny", host=fake.host, format=schema, retries=1, schema_in_prompt=False)
    assert result.data == {"a": 1}
    assert len(fake.requests) == 3 and len(waits) == 1


def test_ollama_commands_wait_for_a_busy_server_too(ip: Any, fake: FakeOllama, waits: list[float], capsys: Any) -> None:
    answers = [Response(json.dumps({"error": "busy"}), status=503), Response(json.dumps({"models": []}))]
    fake.server.expect_request("/api/tags").respond_with_handler(lambda request: answers.pop(0))
    capsys.readouterr()
    assert run(ip, "%ollama list").success
    captured = capsys.readouterr()
    assert captured.err == f"server busy: retry 1 of 6 in {waits[0]:.1f} s\n"
    assert answers == []


def test_the_panel_shows_the_wait_and_takes_a_count(fake: FakeOllama, waits: list[float]) -> None:
    panel = GeneratePanel(host=fake.host, models=["tiny"], busy_retries=1)
    panel.prompt.value = "hi"
    shown: list[str] = []
    panel.status.observe(lambda change: shown.append(change["new"]), "value")
    busy_answer(fake)
    busy_answer(fake)
    panel.start()
    panel.wait(10)
    assert any(f"server busy: retry 1 of 1 in {waits[0]:.1f} s" in s for s in shown)
    assert "still busy after 1 retry over" in panel.status.value
    assert len(fake.requests) == 2


def test_a_stream_false_answer_after_a_busy_answer(fake: FakeOllama, waits: list[float]) -> None:
    busy_answer(fake)
    fake.stream(chunk("Hey"), final([1]))
    result = generate("hi", "tiny", host=fake.host, stream=False)
    assert result.text == "Hey" and result.busy_retries == 1
