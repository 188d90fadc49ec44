"""Failures are one clear line, send nothing when the arguments are wrong, and lose nothing."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ollama_magic import GenerationInterrupted, ModelNotFoundError, OllamaConnectionError, OllamaResponseError, generate

from .conftest import FakeOllama, chunk, final, run


def error_line(ip: Any, capsys: Any, cell: str) -> str:
    """Run a cell that must fail; return what the user sees (stdout+stderr)."""
    result = run(ip, cell)
    assert not result.success
    captured = capsys.readouterr()
    return captured.out + captured.err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("where", ["--host", "%config", "OLLAMA_HOST", "default"])
def test_unreachable_server_is_one_line_naming_the_setting_to_fix(
    ip: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    port = free_port()
    option = ""
    if where == "--host":
        option = f"--host 127.0.0.1:{port}"
    elif where == "%config":
        run(ip, f"%config GenerateMagics.host = '127.0.0.1:{port}'")
    else:
        run(ip, "%config GenerateMagics.host = ''")
        if where == "OLLAMA_HOST":
            monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
        else:
            monkeypatch.setattr("ollama_magic.engine.host.DEFAULT_HOST", f"http://127.0.0.1:{port}")
    seen = error_line(ip, capsys, f"%generate -m tiny {option} Hi")
    assert f"OllamaConnectionError: Could not reach Ollama at http://127.0.0.1:{port}" in seen
    assert "Traceback" not in seen and "`" not in seen  # plain text, not Markdown
    assert len(seen.strip().splitlines()) == 1
    if where == "--host":
        assert "(from --host): check --host" in seen and "OLLAMA_HOST" not in seen
    elif where == "%config":
        assert "check %config GenerateMagics.host" in seen and "OLLAMA_HOST" not in seen
    elif where == "OLLAMA_HOST":
        assert "(from the OLLAMA_HOST environment variable): check OLLAMA_HOST" in seen
    else:
        assert "start it with 'ollama serve'" in seen
        assert "OLLAMA_HOST" in seen and "--host" in seen and "%config GenerateMagics.host" in seen


def test_missing_model_names_commands_without_markdown(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.error(404, "model 'llama9' not found")
    seen = error_line(ip, capsys, "%%generate -m llama9\nHi")
    assert "pull it with 'ollama pull llama9' (or %ollama pull llama9)" in seen
    assert "`" not in seen


def test_missing_model_says_how_to_pull_it(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.error(404, "model 'llama9' not found")
    seen = error_line(ip, capsys, "%%generate -m llama9\nHi")
    assert "ModelNotFoundError: Model 'llama9' is not on the Ollama server" in seen
    assert "ollama pull llama9" in seen
    assert len(seen.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "raw mode does not support template, system, or context", "HTTP 400: raw mode does not support"),
        (500, "invalid JSON schema in format", "HTTP 500: invalid JSON schema in format"),
    ],
)
def test_http_errors_show_ollamas_message(
    ip: Any, fake: FakeOllama, capsys: Any, status: int, message: str, expected: str
) -> None:
    fake.error(status, message)
    seen = error_line(ip, capsys, "%%generate -m tiny\nHi")
    assert f"OllamaResponseError: Ollama answered {expected}" in seen
    assert len(seen.strip().splitlines()) == 1


def test_error_line_inside_a_200_stream(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply(context=[1])
    run(ip, "%%generate -m tiny\nFirst")
    fake.stream(chunk("Partial"), {"error": "an error was encountered while running the model"})
    capsys.readouterr()
    seen = error_line(ip, capsys, "%%generate -m tiny\nSecond")
    assert "Partial" in seen  # kept on screen
    assert "OllamaResponseError: Ollama reported an error: an error was encountered while running the model" in seen
    fake.reply()
    run(ip, "%%generate -m tiny\nThird")
    assert fake.last["context"] == [1]  # the failed turn left the thread as it was


def test_a_broken_line(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.stream(chunk("Hey"), '{"model": "tiny", "respo\n', final([1]))
    seen = error_line(ip, capsys, "%%generate -m tiny\nHi")
    assert "Ollama sent a line that is not JSON" in seen


def test_a_stream_that_ends_without_done_keeps_the_partial_answer(nb: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.reply(context=[1])
    run(nb, "%%generate -m tiny\nFirst")
    fake.stream(chunk("Half an"), chunk(" answer"))  # ends cleanly without `done`, as Ollama's repeat limit does
    seen = error_line(nb, capsys, "%%generate -m tiny -o r\nSecond")
    assert "ended the answer without its final message" in seen
    assert len(seen.strip().splitlines()) == 1
    shown = nb.publisher.final["text/plain"]
    assert shown == "Half an answer"  # kept as it was; the error line is the one message
    assert nb.user_ns["r"].complete is False  # -o holds the partial answer (test_notebook_integrity.py)
    fake.reply()
    run(nb, "%%generate -m tiny\nThird")
    assert fake.last["context"] == [1]


def test_a_server_that_dies_mid_stream(fake: FakeOllama) -> None:
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        line = b'{"model":"tiny","response":"Hey","done":false}\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        conn.sendall(b"ff\r\nshort")  # a chunk cut off, then the connection drops
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    seen: list[str] = []
    with pytest.raises(OllamaConnectionError) as info:
        generate("Hi", "tiny", host=f"127.0.0.1:{port}", on_chunk=lambda p, t: seen.append(p))
    thread.join(5)
    listener.close()
    assert seen == ["Hey"]
    assert info.value.partial.text == "Hey"  # type: ignore[attr-defined]
    assert "broke before the answer was complete" in str(info.value)


class InterruptOnUpdate:
    """A display publisher that raises KeyboardInterrupt at its n-th update, like Ctrl-C would."""

    def __init__(self, publisher: Any, at: int) -> None:
        self.publisher = publisher
        self.at = at

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.publisher.messages_seen = getattr(self.publisher, "messages_seen", 0) + 1
        if self.publisher.messages_seen == self.at:
            raise KeyboardInterrupt


def test_interrupt_keeps_partial_text_closes_the_stream_and_leaves_the_thread(
    nb: Any, fake: FakeOllama, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.reply(context=[1])
    run(nb, "%%generate -m tiny\nFirst")
    fake.stream(*(chunk(f"w{i} ") for i in range(200)), final([9]), delay=0.01)
    original = nb.publisher.publish
    calls = {"n": 0}

    def publish(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(*args, **kwargs)

    monkeypatch.setattr(nb.publisher, "publish", publish)
    capsys.readouterr()
    seen = error_line(nb, capsys, "%%generate -m tiny -o r\nLong")
    assert seen.strip() == "Interrupted: the answer so far is kept; the conversation is unchanged."
    shown = nb.publisher.final["text/plain"]
    assert shown.startswith("w0 w1") and shown.endswith(" ")  # the answer so far, and no second message
    assert "nterrupt" not in nb.publisher.final["text/html"]
    assert fake.yielded[-1] < 150  # the server stopped being read long before the end
    assert nb.user_ns["r"].complete is False  # -o holds the partial answer (test_notebook_integrity.py)
    fake.reply()
    run(nb, "%%generate -m tiny\nThird")
    assert fake.last["context"] == [1]


def test_interrupt_from_python_carries_the_partial_result(fake: FakeOllama) -> None:
    fake.stream(*(chunk("x") for i in range(50)), final([1]))
    count = {"n": 0}

    def on_chunk(piece: str, thought: str) -> None:
        count["n"] += 1
        if count["n"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(GenerationInterrupted) as info:
        generate("Hi", "tiny", host=fake.host, on_chunk=on_chunk)
    assert info.value.partial.text == "xxxxx"  # type: ignore[attr-defined]
    assert info.value.partial.complete is False  # type: ignore[attr-defined]


INVALID = [
    ("%%generate\nHi", "No model given"),
    ("%%generate -m tiny --bogus\nHi", "Unknown option '--bogus'"),
    ("%%generate -m tiny -t hot\nHi", "invalid float value: 'hot'"),
    ("%%generate -m tiny --options '{bad json'\nHi", "--options is not valid JSON"),
    ("%%generate -m tiny --options '[1, 2]'\nHi", "--options must be a JSON object"),
    ("%%generate -m tiny --raw --system S\nHi", "--raw sends the prompt without any template"),
    ("%%generate -m tiny --keep-alive soon\nHi", "keep_alive 'soon' is not a duration"),
    ("%%generate -m tiny --images /no/such.png\nHi", "Image file not found: '/no/such.png'"),
    ("%%generate -m tiny\nHi {undefined_name}", "there is no variable 'undefined_name'"),
    ('%%generate -m tiny\nAs YAML: {"a": 1} for {who.name}', "to send it as typed, write {{who.name}}"),
    ("%%generate -m tiny\n   \n", "The prompt is empty"),
    ("%generate -m tiny", "The prompt is empty"),
    ("%%generate -m tiny stray words\nHi", "Unexpected text on the %%generate line"),
    ("%%generate -m tiny -o 'not a name'\nHi", "-o/--out needs a variable name"),
    ("%%generate -m tiny --timeout 0\nHi", "--timeout must be a positive number"),
    ("%%generate -m tiny --retries 2\nHi", "--retries only applies with --format"),
    ("%%generate -m tiny --host 'localhost:notaport'\nHi", "invalid port"),
    ("%%generate -m tiny --system 'unclosed\nHi", "check its quotes"),
]


@pytest.mark.parametrize(("cell", "message"), INVALID)
def test_invalid_arguments_are_a_usage_error_and_send_nothing(
    ip: Any, fake: FakeOllama, capsys: Any, cell: str, message: str
) -> None:
    seen = error_line(ip, capsys, cell)
    assert "UsageError: " in seen
    assert message in seen
    assert len(seen.strip().splitlines()) == 1
    assert fake.requests == []


def test_python_api_raises_typed_errors(fake: FakeOllama) -> None:
    fake.error(404, "model 'nope' not found")
    with pytest.raises(ModelNotFoundError) as info:
        generate("Hi", "nope", host=fake.host)
    assert info.value.status_code == 404
    fake.error(500, "boom")
    with pytest.raises(OllamaResponseError, match="boom"):
        generate("Hi", "tiny", host=fake.host)
