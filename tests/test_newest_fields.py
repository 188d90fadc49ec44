"""The fields Ollama added after 0.9.3: think levels and --no-think, truncate, shift,
logprobs, remote_model/remote_host.  The real 0.9.3 server cannot send these back, so
their request mapping and response handling are tested here against the fake server;
tests/e2e/test_newest_fields_e2e.py shows what a person sees on the real one.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import ollama_magic
from ollama_magic import InvalidRequestError
from ollama_magic.engine.generation import IgnoredFieldWarning

from .conftest import FakeOllama, chunk, final, run


def entry(token: str, logprob: float, *alternatives: tuple[str, float]) -> dict[str, Any]:
    """One token's probabilities, shaped as Ollama 0.12.11+ sends them."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in alternatives],
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--think max", {"think": "max"}),
        ("--think MAX", {"think": "max"}),
        ("--think low", {"think": "low"}),
        ("--think false", {"think": False}),
        ("--no-think", {"think": False}),
        ("--truncate", {"truncate": True}),
        ("--no-truncate", {"truncate": False}),
        ("--shift", {"shift": True}),
        ("--no-shift", {"shift": False}),
        ("--logprobs", {"logprobs": True, "top_logprobs": 5}),
        ("--logprobs 3", {"logprobs": True, "top_logprobs": 3}),
        ("--logprobs 0", {"logprobs": True, "top_logprobs": 0}),
        (
            "--logprobs=20 --no-truncate --no-shift",
            {"logprobs": True, "top_logprobs": 20, "truncate": False, "shift": False},
        ),
    ],
)
def test_each_new_option_reaches_the_request(ip: Any, fake: FakeOllama, line: str, expected: dict[str, Any]) -> None:
    fake.reply()
    result = run(ip, f"%%generate -m tiny {line}\nHello")
    assert result.success, result.error_in_exec
    for key, value in expected.items():
        assert fake.last[key] == value, key
    assert set(fake.last) <= {"model", "prompt", "stream", "context", *expected}


def test_without_the_new_options_none_of_their_fields_is_sent(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(ip, "%%generate -m tiny\nHello").success
    assert not {"think", "truncate", "shift", "logprobs", "top_logprobs"} & set(fake.last)


def test_one_line_form_keeps_a_prompt_after_an_option_with_an_optional_value(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(ip, "%generate -m tiny --logprobs Why 3 cats?").success
    assert fake.last["prompt"] == "Why 3 cats?" and fake.last["top_logprobs"] == 5
    fake.reply()
    assert run(ip, "%generate -m tiny --logprobs 2 7 cats?").success
    assert fake.last["prompt"] == "7 cats?" and fake.last["top_logprobs"] == 2
    fake.reply()
    assert run(ip, "%generate -m tiny --think max Maximal effort").success
    assert fake.last["prompt"] == "Maximal effort" and fake.last["think"] == "max"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--logprobs 21", "--logprobs takes 0 to 20 alternatives per token, not 21."),
        ("--think=maximal", "think must be true, false or one of low, medium, high, max, not 'maximal'"),
    ],
)
def test_invalid_values_are_one_line_and_send_nothing(
    ip: Any, fake: FakeOllama, capsys: Any, line: str, message: str
) -> None:
    result = run(ip, f"%%generate -m tiny {line}\nHello")
    assert not result.success
    assert message in capsys.readouterr().err
    assert fake.requests == []


def test_generate_takes_the_same_fields(fake: FakeOllama) -> None:
    fake.reply()
    fake.reply()
    fake.reply()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredFieldWarning)  # the fake sends no probabilities
        ollama_magic.generate("Hi", "tiny", host=fake.host, think="max", truncate=True, shift=True, logprobs=True)
        assert {k: fake.last[k] for k in ("think", "truncate", "shift", "logprobs", "top_logprobs")} == {
            "think": "max",
            "truncate": True,
            "shift": True,
            "logprobs": True,
            "top_logprobs": 5,  # the same default as --logprobs
        }
        ollama_magic.generate("Hi", "tiny", host=fake.host, top_logprobs=2)
        assert fake.last["logprobs"] is True and fake.last["top_logprobs"] == 2
        ollama_magic.generate("Hi", "tiny", host=fake.host, think=False)
        assert fake.last["think"] is False
    with pytest.raises(InvalidRequestError, match="top_logprobs must be a whole number from 0 to 20"):
        ollama_magic.generate("Hi", "tiny", host=fake.host, logprobs=True, top_logprobs=21)
    assert len(fake.requests) == 3


def test_token_probabilities_are_collected_from_every_chunk(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    hey = entry("Hey", -0.1, ("Hey", -0.1), ("Hi", -2.5))
    space = entry(" now", -0.7, (" now", -0.7), (" there", -1.2))
    bang = entry("!", -0.01)
    fake.stream(
        chunk("Hey", logprobs=[hey]),
        # Ollama sends chunks that carry only probabilities while its parser holds text back.
        chunk("", logprobs=[space]),
        chunk(" now"),
        final([1, 2], logprobs=[bang]),
    )
    assert run(ip, "%%generate -m tiny --logprobs 2 -o r\nHi").success
    r = ip.user_ns["r"]
    assert r.text == "Hey now"
    assert r.logprobs == [hey, space, bang]
    assert "token probabilities" not in capsys.readouterr().err


def test_asking_for_probabilities_a_server_does_not_send_is_told_in_one_line(
    ip: Any, fake: FakeOllama, capsys: Any
) -> None:
    fake.reply()
    assert run(ip, "%%generate -m tiny --logprobs -o r\nHi").success
    assert ip.user_ns["r"].logprobs is None
    err = capsys.readouterr().err
    assert err == "Note: This server returned no token probabilities: they need Ollama 0.12.11 or newer.\n"
    fake.reply()
    with pytest.warns(IgnoredFieldWarning, match="no token probabilities"):
        ollama_magic.generate("Hi", "tiny", host=fake.host, logprobs=True)


def version_answer(fake: FakeOllama, version: str | None) -> None:
    if version is None:
        fake.server.expect_request("/api/version").respond_with_data("not found", status=404)
    else:
        fake.server.expect_request("/api/version").respond_with_json({"version": version})


@pytest.mark.parametrize(
    ("version", "line", "notes"),
    [
        (
            "0.9.3",
            "--no-truncate --no-shift",
            [
                "Note: This server (Ollama 0.9.3) ignores truncate: false; it needs Ollama 0.12.6 or newer "
                "(a prompt longer than the context is still cut silently).",
                "Note: This server (Ollama 0.9.3) ignores shift: false; it needs Ollama 0.12.6 or newer "
                "(a full context still drops its start silently).",
            ],
        ),
        ("0.9.3", "--truncate --shift", []),  # what every server does anyway
        ("0.12.6", "--no-truncate", []),
        ("0.13.0-rc1", "--no-shift", []),
        ("0.0.0", "--no-truncate", []),  # a development build: its version says nothing
        (None, "--no-truncate", []),  # no version to be had: no guess either
    ],
)
def test_truncate_and_shift_on_a_server_too_old_for_them(
    ip: Any, fake: FakeOllama, capsys: Any, version: str | None, line: str, notes: list[str]
) -> None:
    version_answer(fake, version)
    fake.reply()
    assert run(ip, f"%%generate -m tiny {line}\nHi").success
    assert capsys.readouterr().err.splitlines() == notes


def test_the_version_is_not_asked_when_nothing_depends_on_it(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(ip, "%%generate -m tiny --think\nHi").success
    assert [entry.path for entry, _ in fake.server.log] == ["/api/generate"]


def test_a_field_the_server_rejects_shows_the_servers_message(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.error(400, 'invalid think value: "max" (must be "high", "medium", "low", true, or false)')
    assert not run(ip, "%%generate -m tiny --think max\nHi").success
    seen = capsys.readouterr()
    assert (seen.out + seen.err).strip() == (
        'OllamaResponseError: Ollama answered HTTP 400: invalid think value: "max" '
        '(must be "high", "medium", "low", true, or false)'
    )


def test_remote_model_and_host_in_the_result_and_the_footer(nb: Any, fake: FakeOllama) -> None:
    fake.stream(
        chunk(
            "Hello",
            model="gpt-oss:120b-cloud",
            remote_model="gpt-oss:120b",
            remote_host="https://u:secret@ollama.com:443",
        ),
        final(
            [1], model="gpt-oss:120b-cloud", remote_model="gpt-oss:120b", remote_host="https://u:secret@ollama.com:443"
        ),
    )
    assert run(nb, "%%generate -m gpt-oss:120b-cloud -o r\nHi").success
    r = nb.user_ns["r"]
    assert (r.remote_model, r.remote_host) == ("gpt-oss:120b", "https://u:secret@ollama.com:443")
    shown = nb.publisher.final
    assert "answered by gpt-oss:120b at https://ollama.com:443" in shown["text/plain"]
    assert "secret" not in shown["text/plain"] + shown["text/html"]


def test_a_local_answer_says_nothing_about_remotes(nb: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(nb, "%%generate -m tiny -o r\nHi").success
    assert nb.user_ns["r"].remote_model is None
    assert "answered by" not in nb.publisher.final["text/plain"]
