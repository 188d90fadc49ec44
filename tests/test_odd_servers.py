"""Odd servers: what a broken server or proxy sends gives one clear line, never a traceback.

Each case is a fault the real Ollama does not produce (so the fake server plays it):
invalid UTF-8, a lone surrogate escape, values of the wrong type, entries without a name,
a line that never ends.  The answer so far is kept wherever there is one.
"""

from __future__ import annotations

import re
from typing import Any

from ollama_magic.management import loaded_table, model_names, models_table, show_text

from .conftest import FakeOllama, run


def test_tags_with_null_names_and_odd_values_still_list(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/tags").respond_with_json(
        {
            "models": [
                {"name": None, "size": "big", "details": None, "modified_at": 5},
                {"name": "tiny:latest", "size": 520_000, "details": {"family": ["llama"]}},
                {"size": 1},
                "not a model",
                {"name": 7, "size": float("nan"), "details": "x"},
            ]
        }
    )
    result = run(ip, "%ollama list")
    out = capsys.readouterr()
    assert result.success, out.err
    lines = out.out.splitlines()
    assert lines[0].startswith("NAME")
    assert [line.split()[0] for line in lines[1:]] == ["7", "?", "?", "tiny:latest"]
    assert "Traceback" not in out.out + out.err


def test_tables_read_every_value_defensively() -> None:
    odd: list[Any] = [{"name": None}, {"name": 3, "size": True, "size_vram": "1"}, None, [1], {"expires_at": []}]
    assert models_table(odd).startswith("NAME")
    assert loaded_table(odd).startswith("NAME")
    assert models_table([]).startswith("No models")
    assert show_text("m", {"details": [], "capabilities": [None, 1, "vision"], "parameters": 5}).startswith("Model m")
    assert show_text("m", ["not", "a", "dict"]) == "Model m"  # type: ignore[arg-type]
    assert model_names([{"name": None}, {"name": "b"}, {"name": "a\x1b[2J"}, "x", {"name": 5}]) == ["a", "b"]


def test_a_tags_answer_that_is_not_an_object_is_one_line(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/tags").respond_with_json([{"name": "tiny"}])
    fake.server.expect_request("/api/ps").respond_with_json({"models": "none"})
    result = run(ip, "%ollama list")
    assert not result.success
    seen = capsys.readouterr()
    assert "Ollama sent a JSON list from /api/tags, not an object" in seen.out + seen.err
    assert len((seen.out + seen.err).strip().splitlines()) == 1
    assert run(ip, "%ollama ps").success
    assert "No model is loaded" in capsys.readouterr().out


def test_the_panel_lists_models_despite_null_names(fake: FakeOllama) -> None:
    from ollama_magic.widgets import GeneratePanel

    fake.server.expect_request("/api/tags").respond_with_json({"models": [{"name": None}, {"name": "tiny:latest"}]})
    panel = GeneratePanel(host=fake.host)
    assert panel.model.options == ("tiny:latest",)
    assert not re.search("error", panel.status.value, re.I)
