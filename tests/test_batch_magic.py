"""%%generate --each (lists, Series, DataFrames), --cache on single cells, %ollama cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from ollama_magic.batch.runner import status

from .conftest import FakeOllama, notebook_like, run
from .echo_server import EchoOllama, serve


@pytest.fixture
def echo() -> Iterator[EchoOllama]:
    with serve() as server:
        yield server


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture
def shell(echo: EchoOllama, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell pointed at the threaded echo server."""
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    ip = start_ipython() or get_ipython()
    ip.config.pop("GenerateMagics", None)
    ip.run_line_magic("reload_ext", "ollama_magic")
    ip.run_line_magic("config", f"GenerateMagics.host = {echo.host!r}")
    yield ip
    ip.run_line_magic("unload_ext", "ollama_magic")
    for name in ("out", "xs", "df", "s", "tone", "r", "r1", "r2", "schema"):
        ip.user_ns.pop(name, None)


def magics(ip: Any) -> Any:
    return ip.magics_manager.registry["GenerateMagics"]


def test_each_fills_item_index_and_notebook_names_in_order(shell: Any, echo: EchoOllama) -> None:
    shell.user_ns["xs"] = ["apples", "pears", "plums"]
    shell.user_ns["tone"] = "briefly"
    result = run(shell, "%%generate -m tiny --each xs --concurrency 3 -o out\nDescribe {item} ({index}) {tone}")
    assert result.success, result.error_in_exec
    out = shell.user_ns["out"]
    assert [r.text for r in out] == [
        f"echo: Describe {x} ({i}) briefly" for i, x in enumerate(["apples", "pears", "plums"])
    ]
    assert sorted(echo.prompts) == sorted(
        f"Describe {x} ({i}) briefly" for i, x in enumerate(["apples", "pears", "plums"])
    )


def test_items_never_touch_conversation_threads(shell: Any, echo: EchoOllama) -> None:
    shell.user_ns["xs"] = ["a", "b"]
    assert run(shell, "%%generate -m tiny --each xs -o out\n{item}").success
    assert magics(shell).conversations.threads == {}
    assert all("context" not in r.request for r in shell.user_ns["out"])
    assert run(shell, "%%generate -m tiny -o r\nhello").success
    assert "context" not in shell.user_ns["r"].request  # the thread starts fresh after a batch


def test_a_template_that_cannot_be_filled_is_one_line_and_sends_nothing(
    shell: Any, echo: EchoOllama, capsys: Any
) -> None:
    shell.user_ns["xs"] = ["a", "b"]
    result = run(shell, "%%generate -m tiny --each xs\n{item} and {nowhere}")
    assert not result.success
    err = capsys.readouterr()
    seen = err.out + err.err
    assert "Item 0 of --each" in seen and "nowhere" in seen and "Traceback" not in seen
    for cell, message in [
        ("%%generate -m tiny --each missing\n{item}", "no variable 'missing'"),
        ("%%generate -m tiny --each xs --thread t\n{item}", "never touch conversation threads"),
        ("%%generate -m tiny --concurrency 2\nhi", "only applies with --each"),
        ("%%generate -m tiny --each xs --concurrency 0\n{item}", "1 or more"),
    ]:
        assert not run(shell, cell).success
        captured = capsys.readouterr()
        assert message in captured.out + captured.err, cell
    shell.user_ns["d"] = {"a": 1}
    assert not run(shell, "%%generate -m tiny --each d\n{item}").success
    assert "not a dict (use list(d.items())" in "".join(capsys.readouterr())
    assert echo.prompts == []


def test_dataframe_in_dataframe_out_with_schema_columns(shell: Any, echo: EchoOllama) -> None:
    shell.user_ns["df"] = pd.DataFrame({"name": ["goodjson a", "fail b", "goodjson c"], "n": [1, 2, 3]})
    shell.user_ns["schema"] = SCHEMA
    result = run(shell, "%%generate -m tiny --each df --format schema -o out\nRow {index}: {name}, {n}")
    assert result.success, result.error_in_exec
    out = shell.user_ns["out"]
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["name", "n", "response", "response_n"]  # "n" exists: not overwritten
    assert list(out["n"]) == [1, 2, 3]
    assert out["response"][0] == '{"n": 1}' and pd.isna(out["response"][1])
    assert out["response_n"][0] == 1 and pd.isna(out["response_n"][1])
    assert list(shell.user_ns["df"].columns) == ["name", "n"]  # the user's frame is untouched
    assert any(p.startswith("Row 0: goodjson a, 1") for p in echo.prompts)


def test_a_series_gives_item_and_its_index_label(shell: Any, echo: EchoOllama) -> None:
    shell.user_ns["s"] = pd.Series(["x", "y"], index=["first", "second"])
    assert run(shell, "%%generate -m tiny --each s -o out\n{index}={item}").success
    assert [r.text for r in shell.user_ns["out"]] == ["echo: first=x", "echo: second=y"]


def test_progress_bar_then_an_escaped_table_with_totals(shell: Any, echo: EchoOllama) -> None:
    shell.user_ns["xs"] = ["<script>alert(1)</script>", "fail here", *[f"n{i}" for i in range(10)]]
    with notebook_like(shell) as nb:
        assert run(nb, "%%generate -m tiny --each xs -o out\n{item}").success
        messages = nb.publisher.messages
    htmls = [m["data"]["text/html"] for m in messages if "data" in m]
    assert "ollama-magic-progress" in htmls[0]  # the bar comes first
    assert "0 / 12" in htmls[0]
    final = htmls[-1]
    assert "<script>" not in final and "&lt;script&gt;alert(1)&lt;/script&gt;" in final
    assert "failed: Ollama answered HTTP 500: the model crashed" in final
    assert "12 items · 11 done · 1 failed" in final
    assert "first 10 of 12 rows shown" in final
    assert all(m.get("update") for m in messages[1:])  # one output, updated in place


def test_each_resumes_from_the_configured_cache(shell: Any, echo: EchoOllama, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    shell.run_line_magic("config", f"GenerateMagics.cache = {str(path)!r}")
    shell.user_ns["xs"] = ["a", "b"]
    assert run(shell, "%%generate -m tiny --each xs -o out\n{item}").success
    shell.user_ns["xs"] = ["a", "b", "c"]
    with notebook_like(shell) as nb:
        assert run(nb, "%%generate -m tiny --each xs -o out\n{item}").success
        final = nb.publisher.messages[-1]["data"]["text/html"]
    assert sorted(echo.prompts) == ["a", "b", "c"]  # a and b once, then only c
    assert [status(r) for r in shell.user_ns["out"]] == ["cached", "cached", "ok"]
    assert "(2 from cache)" in final and final.count("from cache") >= 3  # two rows and the footer


# -- a single cell with --cache ------------------------------------------------------------


def test_a_cached_cell_is_marked_and_continues_its_thread_as_before(ip: Any, fake: FakeOllama, tmp_path: Path) -> None:
    path = tmp_path / "cells.sqlite"
    fake.reply("First.", context=[1, 2, 3])
    fake.reply("Second.", context=[1, 2, 3, 4, 5])
    with notebook_like(ip) as nb:
        assert run(nb, f"%%generate -m tiny --cache {path} -o r1\nOne", cell_id="c1").success
        assert run(nb, f"%%generate -m tiny --cache {path} -o r2\nTwo", cell_id="c2").success
    assert len(fake.requests) == 2
    assert fake.requests[1]["context"] == [1, 2, 3]

    # A fresh kernel (the thread is empty) replays the notebook: nothing is sent, the
    # second cell is found because the first restored the context it continues from.
    ip.run_line_magic("ollama", "reset")
    with notebook_like(ip) as nb:
        assert run(nb, f"%%generate -m tiny --cache {path} -o r1\nOne", cell_id="c1").success
        shown = nb.publisher.messages[-1]["data"]
        assert run(nb, f"%%generate -m tiny --cache {path} -o r2\nTwo", cell_id="c2").success
    assert len(fake.requests) == 2  # nothing new was sent
    r2 = ip.user_ns["r2"]
    assert r2.cached and r2.text == "Second." and r2.context == [1, 2, 3, 4, 5]
    assert "from cache" in shown["text/html"] and "from cache" in shown["text/plain"]
    assert "First." in shown["text/html"]

    # The next live cell continues from the cached turn's context.
    fake.reply("Third.", context=[9])
    assert run(ip, "%%generate -m tiny -o r\nThree").success
    assert fake.last["context"] == [1, 2, 3, 4, 5]


def test_a_failed_cell_is_not_cached(ip: Any, fake: FakeOllama, tmp_path: Path) -> None:
    path = tmp_path / "cells.sqlite"
    fake.error(500, "boom")
    assert not run(ip, f"%%generate -m tiny --cache {path}\nOne").success
    fake.reply("Now.")
    assert run(ip, f"%%generate -m tiny --cache {path} -o r\nOne").success
    assert not ip.user_ns["r"].cached and len(fake.requests) == 2


def test_ollama_cache_info_and_clear(ip: Any, fake: FakeOllama, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "cells.sqlite"
    ip.run_line_magic("ollama", f"cache info {path}")
    assert "No cache at" in capsys.readouterr().out
    fake.reply("Hi.")
    assert run(ip, f"%%generate -m tiny --cache {path}\nOne").success
    capsys.readouterr()
    ip.run_line_magic("ollama", f"cache {path}")
    out = capsys.readouterr().out
    assert "1 answer(s)" in out and "tiny" in out
    ip.run_line_magic("ollama", f"cache clear {path}")
    assert "Cleared 1 answer(s)" in capsys.readouterr().out
    assert not run(ip, "%ollama cache").success  # no path and none configured
    assert "Which cache?" in "".join(capsys.readouterr())
    ip.run_line_magic("ollama", "help")
    assert "cache [info | clear] [PATH]" in capsys.readouterr().out


def test_cache_file_is_json_free_of_images(tmp_path: Path) -> None:
    """What is stored is readable JSON; image bytes are only in the key (as a hash)."""
    import sqlite3

    from ollama_magic import GenerationResult
    from ollama_magic.batch.cache import ResultCache

    result = GenerationResult(text="a cat", model="m", request={"model": "m", "prompt": "p", "images": ["QUJD"]})
    with ResultCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", result)
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        stored = json.loads(conn.execute("SELECT result FROM answers").fetchone()[0])
    assert stored["request"]["images"] == 1 and "QUJD" not in json.dumps(stored)


def test_in_a_terminal_the_table_carries_no_escape_sequences(shell: Any, echo: EchoOllama, capsys: Any) -> None:
    shell.user_ns["xs"] = ["clip\x1b]52;c;aGk=\x07board", "plain"]
    assert run(shell, "%%generate -m tiny --each xs\n{item}").success
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "echo: clipboard" in out and "2 items · 2 done · 0 failed" in out
