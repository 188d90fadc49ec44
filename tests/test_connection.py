"""One value says which server and how to reach it (engine/connection.py)."""

from __future__ import annotations

import pytest

from ollama_magic import compare, generate, generate_many
from ollama_magic.engine.connection import Connection, split
from ollama_magic.engine.errors import OllamaMagicError

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, so a request would fail to connect


def test_a_connection_never_shows_its_secrets() -> None:
    connection = Connection(host="http://ada:hunter2@127.0.0.1:11434", headers={"Authorization": "Bearer tok-123"})
    shown = repr(connection) + repr(connection.client())
    assert "hunter2" not in shown and "tok-123" not in shown
    assert "127.0.0.1:11434" in shown


def test_loose_keywords_win_over_the_connection_they_come_with() -> None:
    base = Connection(host="127.0.0.1:1", timeout=5.0, headers={"X-Class": "a"})
    connection, rest = split({"connection": base, "host": "127.0.0.1:2", "timeout": None, "system": "s"})
    assert connection.host == "127.0.0.1:2"
    assert connection.timeout == 5.0  # a None keyword does not erase a setting
    assert connection.headers == {"X-Class": "a"}
    assert rest == {"system": "s"}
    with pytest.raises(TypeError, match="Connection"):
        split({"connection": "127.0.0.1:1"})


def test_equal_connections_share_one_client_in_a_batch() -> None:
    a = Connection(host="h:1", headers={"A": "1", "B": "2"})
    b = Connection(host="h:1", headers={"B": "2", "A": "1"})
    assert a == b and hash(a) == hash(b)
    assert Connection(host="h:1") != Connection(host="h:2")


@pytest.mark.parametrize(
    "call",
    [
        lambda **kw: generate("hi", "tiny", **kw),
        lambda **kw: compare("hi", ["tiny", "tiny-long"], **kw),
        lambda **kw: generate_many(["hi", "ho"], "tiny", progress=False, **kw),
    ],
    ids=["generate", "compare", "generate_many"],
)
def test_a_bad_header_is_one_line_before_anything_is_sent(call: object) -> None:
    # Were anything sent, the error would be that 127.0.0.1:9 cannot be reached.
    with pytest.raises(OllamaMagicError) as failure:
        call(host=NOWHERE, headers={"Bad Name": "x"})  # type: ignore[operator]
    message = str(failure.value)
    assert "header" in message and "\n" not in message and "reach" not in message


def test_a_connection_passed_down_reaches_the_server_it_names() -> None:
    results = generate_many(["hi"], "tiny", progress=False, connection=Connection(host=NOWHERE, timeout=2.0))
    error = results[0].error or ""
    assert "127.0.0.1:9" in error and "\n" not in error
