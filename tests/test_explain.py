"""``%ollama explain``: the last error of the kernel, sent to the model in thread ``explain``."""

from __future__ import annotations

from typing import Any

from .conftest import FakeOllama, run

FAILING = "def half(x):\n    return x / 0\n\nhalf(3)"


def test_the_last_error_its_traceback_and_its_code_are_sent(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    run(ip, "%config GenerateMagics.model = 'tiny'")
    fake.reply("Dividing by zero.", [9])
    assert run(ip, "%%generate\nHi").success  # the default thread, before the error
    assert not run(ip, FAILING).success
    assert run(ip, "x = 1").success  # a later cell that works does not forget the error
    fake.reply("You divided by zero.", [7, 8])
    capsys.readouterr()
    assert run(ip, "%ollama explain").success
    sent = fake.last
    assert sent["model"] == "tiny" and "context" not in sent  # a thread of its own, fresh
    prompt = sent["prompt"]
    assert "```python\ndef half(x):\n    return x / 0\n\nhalf(3)\n```" in prompt
    assert "ZeroDivisionError: division by zero" in prompt
    assert "in half" in prompt and "return x / 0" in prompt
    assert "interactiveshell.py" not in prompt  # IPython's own frames explain nothing
    assert "You divided by zero." in capsys.readouterr().out
    capsys.readouterr()
    run(ip, "%ollama threads")
    table = capsys.readouterr().out
    assert "explain" in table and "default" in table
    # the default thread was left alone: the next cell continues it, not the explanation
    fake.reply("Again.", [10])
    assert run(ip, "%%generate\nMore").success
    assert fake.last["context"] == [9]


def test_explain_with_a_model_and_errors_before_execution(ip: Any, fake: FakeOllama) -> None:
    assert not run(ip, "print('unclosed").success  # a SyntaxError: raised before running
    fake.reply("A quote is missing.")
    assert run(ip, "%ollama explain tiny").success
    assert fake.last["model"] == "tiny"
    assert "SyntaxError" in fake.last["prompt"] and "print('unclosed" in fake.last["prompt"]


def test_braces_in_the_code_are_sent_as_they_are(ip: Any, fake: FakeOllama) -> None:
    assert not run(ip, "d = {'a': 1}\nd['{b}']").success
    fake.reply("No key b.")
    assert run(ip, "%ollama explain tiny").success
    assert "d['{b}']" in fake.last["prompt"] and "KeyError: '{b}'" in fake.last["prompt"]


def test_no_error_yet_says_so_and_sends_nothing(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    assert run(ip, "%ollama explain tiny").success
    assert capsys.readouterr().out == (
        "There is no error to explain: no cell has failed in this kernel since ollama_magic was loaded.\n"
    )
    assert fake.requests == []


def test_explain_own_failure_is_not_what_it_explains_next(ip: Any, fake: FakeOllama) -> None:
    assert not run(ip, "1/0").success
    fake.error(500, "out of memory")
    assert not run(ip, "%ollama explain tiny").success
    fake.reply("Zero.")
    assert run(ip, "%ollama explain tiny").success
    assert "ZeroDivisionError" in fake.last["prompt"]
