"""The command line with a fake server: what a real one cannot be made to send."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ollama_magic.cli import CliError, generate_parser, run_generate

from .conftest import FakeOllama, chunk, final


def run(fake: FakeOllama, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_generate(generate_parser().parse_args(["--host", fake.host, *argv]), out, err)
    return status, out.getvalue(), err.getvalue()


def test_escape_sequences_in_an_answer_never_reach_the_terminal(fake: FakeOllama) -> None:
    fake.stream(chunk("Hi\x1b]52;c;c2VjcmV0"), chunk("\x07 there\x1b[2J."), final([1]))
    status, out, _ = run(fake, "--prompt", "x", "--model", "tiny")
    assert status == 0
    assert out == "Hi there.\n"


def test_escape_sequences_are_stripped_without_streaming_too(fake: FakeOllama) -> None:
    fake.stream(chunk("Hi\x1b[31m red\x9b2J"), final([1]))
    _, out, _ = run(fake, "--prompt", "x", "--model", "tiny", "--no-stream")
    assert out == "Hi red\n"


def test_a_model_that_fails_to_load_falls_back(fake: FakeOllama) -> None:
    fake.error(500, "llama runner process has terminated: error loading model: out of memory")
    fake.reply("Fine.", model="small")
    status, out, err = run(fake, "--prompt", "x", "--model", "huge", "--fallback-model", "small")
    assert status == 0 and out == "Fine.\n"
    assert err.splitlines()[0] == "model huge failed to load; answering with small"
    assert [r["model"] for r in fake.requests] == ["huge", "small"]


def test_other_server_errors_do_not_fall_back(fake: FakeOllama) -> None:
    fake.error(400, "invalid options")
    with pytest.raises(Exception, match="invalid options"):
        run(fake, "--prompt", "x", "--model", "m", "--fallback-model", "other")
    assert len(fake.requests) == 1


def test_no_model_and_no_fallback_is_a_usage_error(fake: FakeOllama, monkeypatch: Any) -> None:
    with pytest.raises(CliError, match="no model given") as info:
        run(fake, "--prompt", "x", "--no-fallback")
    assert info.value.status == 2
    assert fake.requests == []


def test_temperature_and_num_predict_become_options(fake: FakeOllama) -> None:
    fake.stream(chunk("Hi."), final([1]))
    status, out, _ = run(fake, "--prompt", "x", "--model", "tiny", "--temperature", "0.7", "--num-predict", "20")
    assert status == 0 and out == "Hi.\n"
    assert fake.last["options"] == {"temperature": 0.7, "num_predict": 20}
