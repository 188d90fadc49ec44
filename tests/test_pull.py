"""``%ollama pull``: a progress display a person can read, and one line for each failure.

The fake server streams the progress objects Ollama 0.9.3 sends (checked against the real
server and a real registry in tests/e2e/test_pull_e2e.py).
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from ollama_magic.server.pull import PullInterrupted, PullState, TerminalPullView

from .conftest import RecordingPublisher, TerminalScreen, notebook_like, run

DIGEST = "sha256:" + "ab12cd34ef56" + "0" * 52
OFFLINE = (
    'pull model manifest: Get "https://registry.ollama.ai/v2/library/qwen2.5/manifests/0.5b": '
    "dial tcp: lookup registry.ollama.ai on 10.255.255.53:53: no such host"
)


def screen(text: str) -> list[str]:
    """The non-empty lines a terminal shows for ``text``: a carriage return overwrites its line."""
    shown = []
    for line in text.split("\n"):
        cells: list[str] = []
        for segment in line.split("\r"):
            cells[: len(segment)] = list(segment)
        if "".join(cells).strip():
            shown.append("".join(cells).rstrip())
    return shown


def progress(total: int = 40_000_000, steps: int = 4) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [{"status": "pulling manifest"}]
    for i in range(steps + 1):
        objs.append(
            {"status": f"pulling {DIGEST[7:19]}", "digest": DIGEST, "total": total, "completed": total * i // steps}
        )
    objs += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    return objs


def serve_pull(httpserver: HTTPServer, objects: list[Any], seen: list[dict[str, Any]] | None = None) -> None:
    def handle(request: Request) -> Response:
        if seen is not None:
            seen.append(request.get_json())
        body = "".join(o if isinstance(o, str) else json.dumps(o) + "\n" for o in objects)
        return Response(body, mimetype="application/x-ndjson")

    httpserver.expect_request("/api/pull", method="POST").respond_with_handler(handle)


def test_the_state_gives_layer_megabytes_rate_and_time_left() -> None:
    now = [0.0]
    state = PullState("qwen2.5:0.5b", clock=lambda: now[0])
    state.update({"status": "pulling manifest"})
    assert state.line() == "qwen2.5:0.5b: pulling manifest"
    for second, done in [(0, 0), (1, 10_000_000), (2, 20_000_000)]:
        now[0] = float(second)
        state.update({"status": "pulling c5396e06af29", "digest": DIGEST, "total": 400_000_000, "completed": done})
    assert state.layer_text() == "layer 1 of 1 · ab12cd340000"[:0] + f"layer 1 of 1 · {DIGEST[7:19]}"
    assert state.numbers_text() == "20.0 / 400.0 MB · 10.0 MB/s · 38 s left"
    assert (
        state.line() == f"qwen2.5:0.5b: layer 1 of 1 · {DIGEST[7:19]} ·   5% · 20.0 / 400.0 MB · 10.0 MB/s · 38 s left"
    )
    state.update({"status": "success"})
    assert state.done and state.line() == "qwen2.5:0.5b: success"


def test_the_terminal_shows_one_updating_line_then_the_result(
    ip: Any, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_pull(httpserver, progress())
    terminal = TerminalScreen()
    monkeypatch.setattr(sys, "stdout", terminal)
    result = run(ip, "%ollama pull some-model")
    assert result.success, result.error_in_exec
    out = terminal.getvalue()
    assert out.count("\r") >= 2  # one line, rewritten in place
    assert screen(out) == ["Pulled some-model: 1 layers, 40.0 MB, ready to use."]


def test_a_log_gets_a_line_per_step_and_no_carriage_returns(ip: Any, httpserver: HTTPServer, capsys: Any) -> None:
    """Into a pipe or a log (a Binder build's), each step is one line as it ends."""
    serve_pull(httpserver, progress())
    result = run(ip, "%ollama pull some-model")
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "some-model: pulling manifest"
    assert lines[1].startswith(f"some-model: layer 1 of 1 · {DIGEST[7:19]} · 100% · 40.0 / 40.0 MB")
    assert lines[2:] == [
        "some-model: verifying sha256 digest",
        "some-model: writing manifest",
        "Pulled some-model: 1 layers, 40.0 MB, ready to use.",
    ]


def test_the_notebook_shows_a_progress_bar_and_saves_the_final_line(
    ip: Any, httpserver: HTTPServer, capsys: Any
) -> None:
    serve_pull(httpserver, progress())
    with notebook_like(ip) as shell:
        result = run(shell, "%ollama pull some-model")
        assert result.success, result.error_in_exec
        publisher: RecordingPublisher = shell.publisher
        widgets = [m for m in publisher.messages if "application/vnd.jupyter.widget-view+json" in m.get("data", {})]
        assert widgets, publisher.messages  # a live ipywidgets bar
    assert "Pulled some-model: 1 layers, 40.0 MB, ready to use." in capsys.readouterr().out


def test_insecure_reaches_the_request(ip: Any, httpserver: HTTPServer) -> None:
    seen: list[dict[str, Any]] = []
    serve_pull(httpserver, progress(), seen)
    assert run(ip, "%ollama pull --insecure 127.0.0.1:5055/library/tiny").success
    assert seen[-1] == {"model": "127.0.0.1:5055/library/tiny", "stream": True, "insecure": True}
    assert run(ip, "%ollama pull tiny").success
    assert "insecure" not in seen[-1]


def test_a_server_without_internet_is_one_line_that_says_what_to_do(
    ip: Any, httpserver: HTTPServer, capsys: Any
) -> None:
    serve_pull(httpserver, [{"status": "pulling manifest"}, {"error": OFFLINE}])
    result = run(ip, "%ollama pull qwen2.5:0.5b")
    assert not result.success
    seen = capsys.readouterr()
    text = seen.out + seen.err
    lines = screen(text)
    assert len(lines) == 1, text
    assert lines[0].startswith("RegistryUnreachableError: The Ollama server at http://127.0.0.1:")
    assert "cannot reach Ollama's model registry (registry.ollama.ai) to pull 'qwen2.5:0.5b': " in lines[0]
    assert "give it internet access, or pull on a machine that has and copy ~/.ollama/models over." in lines[0]
    assert lines[0].count("registry.ollama.ai") == 1 and len(lines[0]) < 240
    assert "dial tcp" not in text and "Traceback" not in text


def test_another_registry_out_of_reach_is_named_once(ip: Any, httpserver: HTTPServer, capsys: Any) -> None:
    refused = 'Get "http://127.0.0.1:1/v2/library/tiny/manifests/latest": dial tcp 127.0.0.1:1: connect: refused'
    serve_pull(httpserver, [{"status": "pulling manifest"}, {"error": refused}])
    assert not run(ip, "%ollama pull --insecure 127.0.0.1:1/library/tiny").success
    seen = capsys.readouterr()
    (line,) = screen(seen.out + seen.err)
    assert line.endswith(
        "cannot reach the registry 127.0.0.1:1 to pull '127.0.0.1:1/library/tiny': "
        "check that the registry runs and that the server can reach it."
    )
    assert line.count("127.0.0.1:1 ") == 1


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OFFLINE, "the registry registry.ollama.ai cannot be reached from it, so it was not checked for a newer"),
        ("pull model manifest: file does not exist", "has no model of that name (it was made or copied onto this"),
    ],
)
def test_pulling_a_model_the_server_has_is_one_calm_line_when_the_registry_cannot_help(
    ip: Any, httpserver: HTTPServer, capsys: Any, error: str, words: str
) -> None:
    """A notebook's pull cell of the model it uses shows something true wherever it runs:
    offline, or with a model made locally that no registry has."""
    serve_pull(httpserver, [{"status": "pulling manifest"}, {"error": error}])
    tags = {"models": [{"name": "smollm2:latest", "model": "smollm2:latest"}]}
    httpserver.expect_request("/api/tags").respond_with_json(tags)
    with notebook_like(ip) as shell:
        assert run(shell, "%ollama pull smollm2").success
        bar = [m for m in shell.publisher.messages if "application/vnd.jupyter.widget-view+json" in m["data"]]
        assert bar
    seen = capsys.readouterr()
    assert seen.err == ""
    (line,) = screen(seen.out)
    assert line.startswith("smollm2 is on the server already; ") and words in line


def test_a_failed_pull_turns_its_bar_red_and_says_so() -> None:
    """Left as it was, the bar would stay empty beside "pulling manifest", as if still working."""
    from ollama_magic.server.pull import NotebookPullView

    shown: list[Any] = []
    for objects, words in (
        ([{"status": "pulling manifest"}], "failed"),
        (progress()[:3], "failed at 25%"),
    ):
        view = NotebookPullView(shown.append)
        state = PullState("m")
        for obj in objects:
            state.update(obj)
            view.update(state)
        state.outcome = "failed"
        view.finish(state, None)
        assert view.bar.bar_style == "danger" and view.bar.value > 0
        assert words in view.numbers.value and "pulling manifest" not in view.numbers.value


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("pull model manifest: file does not exist", "has no model 'nope'"),
        ('Get "https://127.0.0.1:5055/v2/": http: server gave HTTP response to HTTPS client', "pull with --insecure"),
    ],
)
def test_other_registry_failures_are_one_line(
    ip: Any, httpserver: HTTPServer, capsys: Any, error: str, expected: str
) -> None:
    serve_pull(httpserver, [{"status": "pulling manifest"}, {"error": error}])
    assert not run(ip, "%ollama pull nope").success
    seen = capsys.readouterr()
    lines = screen(seen.out + seen.err)
    assert len(lines) == 1 and expected in lines[0], lines


def test_ctrl_c_during_a_pull_is_one_calm_line(ip: Any, httpserver: HTTPServer, capsys: Any, monkeypatch: Any) -> None:
    terminal = TerminalScreen()  # a person at a terminal: the progress line goes
    monkeypatch.setattr(sys, "stdout", terminal)
    serve_pull(httpserver, progress(steps=20))
    calls = {"n": 0}
    original = TerminalPullView.update

    def interrupted(self: TerminalPullView, state: PullState) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # what Ctrl-C does while the loop runs
        original(self, state)

    monkeypatch.setattr(TerminalPullView, "update", interrupted)
    result = run(ip, "%ollama pull some-model")
    assert not result.success  # the cell ends as failed, so Run All stops there
    assert isinstance(result.error_in_exec, PullInterrupted)
    seen = capsys.readouterr()
    text = terminal.getvalue() + seen.out + seen.err
    lines = screen(text)
    assert lines == [
        "PullInterrupted: Pull of 'some-model' interrupted: the layers already downloaded stay on the server; "
        "pull again to resume."
    ], text
    assert "KeyboardInterrupt" not in text and "Traceback" not in text


def test_hostile_status_text_cannot_drive_the_terminal() -> None:
    state = PullState("m")
    state.update({"status": "pulling \x1b]52;c;c2VjcmV0\x07manifest\x1b[2J"})
    after = PullState("m")
    after.update({"status": "verifying sha256 digest"})
    for out in (TerminalScreen(), io.StringIO()):  # a terminal, and a log (a step's line once it ends)
        view = TerminalPullView(out, interval=0)
        view.update(state)
        view.update(after)
        assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
        assert "pulling manifest" in out.getvalue()


def test_usage_mistakes_are_one_line(ip: Any, capsys: Any) -> None:
    for line in ("%ollama pull", "%ollama pull a b", "%ollama pull --force a"):
        assert not run(ip, line).success
        seen = capsys.readouterr()
        assert "Usage: %ollama pull [--insecure] MODEL" in seen.out + seen.err
