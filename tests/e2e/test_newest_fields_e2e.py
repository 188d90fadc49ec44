"""The fields newer than the real server (Ollama 0.9.3): what a person who asks for them sees.

0.9.3 ignores fields it does not know (``logprobs``, ``truncate``, ``shift``) and answers
as if they had not been sent; ollama_magic says so in one line.  It rejects a think level
(``think`` was a bool then); the server's own words are shown.  The mapping and display of
what newer servers send back are tested with the fake server (tests/test_newest_fields.py).
"""

from __future__ import annotations

from typing import Any

import pytest

import ollama_magic
from ollama_magic.engine.generation import IgnoredFieldWarning

from .conftest import SHORT
from .support import HEY, assert_one_line, failing_cell, run


def test_asking_for_token_probabilities_is_answered_and_told_why_there_are_none(real_ip: Any, capsys: Any) -> None:
    capsys.readouterr()
    assert run(real_ip, f"%%generate -m {SHORT} --no-context --logprobs 3 -o r\nhi").success
    seen = capsys.readouterr()
    r = real_ip.user_ns["r"]
    assert r.text == HEY and r.request["logprobs"] is True and r.request["top_logprobs"] == 3
    assert r.logprobs is None
    assert seen.err == "Note: This server returned no token probabilities: they need Ollama 0.12.11 or newer.\n"


def test_no_truncate_on_a_server_that_ignores_it_is_told_in_one_line(real_ip: Any, capsys: Any) -> None:
    version = ollama_magic.OllamaClient().version()
    capsys.readouterr()
    assert run(real_ip, f"%%generate -m {SHORT} --no-context --no-truncate -o r\nhi").success
    assert real_ip.user_ns["r"].text == HEY
    assert capsys.readouterr().err == (
        f"Note: This server (Ollama {version}) ignores truncate: false; it needs Ollama 0.12.6 or newer "
        "(a prompt longer than the context is still cut silently).\n"
    )


def test_from_python_the_same_notes_are_warnings(real_host: str) -> None:
    with pytest.warns(IgnoredFieldWarning, match="no token probabilities"):
        r = ollama_magic.generate("hi", SHORT, host=real_host, logprobs=True)
    assert r.text == HEY


def test_a_think_level_the_server_rejects_shows_its_message(real_ip: Any, capsys: Any) -> None:
    line = assert_one_line(failing_cell(real_ip, capsys, f"%%generate -m {SHORT} --think max\nhi"))
    assert line.startswith(
        "OllamaResponseError: This Ollama server accepts only --think without a level (it rejected 'max'): "
        "levels need Ollama 0.11 or newer ('max' 0.21). The server said: Ollama answered HTTP 400: "
    )
    assert line.endswith("json: cannot unmarshal string into Go struct field GenerateRequest.think of type bool")


def test_no_think_is_accepted_by_a_model_that_cannot_think(real_ip: Any, capsys: Any) -> None:
    # --think on such a model is a 400; --no-think is what a person sends to newer servers
    # whose thinking models think by default, and it must not break a model without it.
    assert run(real_ip, f"%%generate -m {SHORT} --no-context --no-think -o r\nhi").success
    r = real_ip.user_ns["r"]
    assert r.text == HEY and r.request["think"] is False
