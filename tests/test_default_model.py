"""OLLAMA_MAGIC_MODEL: the model used when neither -m nor %config names one.

Binder's ``start``, a JupyterHub or CI set it, so notebooks need not hard-code a model.
It is read at each request (like OLLAMA_HOST), by the magic, ``generate()`` and the panel.
"""

from __future__ import annotations

from typing import Any

import pytest

from ollama_magic import InvalidRequestError, generate
from ollama_magic.widgets.panel import GeneratePanel

from .conftest import FakeOllama, run


def test_the_magic_uses_the_environment_model_read_at_each_cell(
    ip: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_MAGIC_MODEL", "qwen2.5:0.5b")
    fake.reply()
    assert run(ip, "%%generate\nHi").success
    assert fake.last["model"] == "qwen2.5:0.5b"
    monkeypatch.setenv("OLLAMA_MAGIC_MODEL", "tiny")  # changed mid-session: obeyed at once
    fake.reply()
    assert run(ip, "%generate Hi").success
    assert fake.last["model"] == "tiny"


def test_config_and_dash_m_win_over_the_environment(ip: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAGIC_MODEL", "from-env")
    run(ip, "%config GenerateMagics.model = 'from-config'")
    fake.reply()
    assert run(ip, "%%generate\nHi").success
    assert fake.last["model"] == "from-config"
    fake.reply()
    assert run(ip, "%%generate -m from-line\nHi").success
    assert fake.last["model"] == "from-line"


def test_no_model_anywhere_names_all_three_ways_and_sends_nothing(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    result = run(ip, "%%generate\nHi")
    assert not result.success
    seen = capsys.readouterr()
    message = seen.out + seen.err
    assert "No model given" in message and "-m MODEL" in message and "OLLAMA_MAGIC_MODEL" in message
    assert "Traceback" not in message
    assert fake.requests == []


def test_generate_takes_its_model_from_the_environment(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAGIC_MODEL", "tiny")
    fake.reply("Hey now!")
    result = generate("Hi", host=fake.host)
    assert fake.last["model"] == "tiny"
    assert result.text == "Hey now!"
    fake.reply()
    generate("Hi", "other", host=fake.host)  # an explicit model still wins
    assert fake.last["model"] == "other"


def test_generate_without_any_model_is_an_invalid_request(fake: FakeOllama) -> None:
    with pytest.raises(InvalidRequestError, match="OLLAMA_MAGIC_MODEL"):
        generate("Hi", host=fake.host)
    assert fake.requests == []


def test_the_panel_starts_with_the_environment_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAGIC_MODEL", "qwen2.5:0.5b")
    panel = GeneratePanel(models=["tiny", "tiny-long"])
    assert panel.model.value == "qwen2.5:0.5b"
    assert GeneratePanel(model="tiny-long", models=["tiny"]).model.value == "tiny-long"
    monkeypatch.delenv("OLLAMA_MAGIC_MODEL")
    assert GeneratePanel(models=["tiny", "tiny-long"]).model.value == "tiny"
