"""%ollama: models, loaded models, details, version, pull."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from ollama_magic import __version__

from .conftest import FakeOllama, TerminalScreen, run

TAGS = {
    "models": [
        {
            "name": "tiny:latest",
            "size": 520_000,
            "modified_at": "2026-11-26T12:00:00.123Z",
            "details": {"family": "llama", "parameter_size": "0.1M", "quantization_level": "F32"},
        },
        {
            "name": "llama3.2:latest",
            "size": 2_019_393_189,
            "modified_at": "2026-11-20T08:00:00Z",
            "details": {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
        },
    ]
}


def test_list(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/tags").respond_with_json(TAGS)
    run(ip, "%ollama list")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "FAMILY", "PARAMETERS", "QUANTIZATION", "MODIFIED"]
    assert lines[1].split() == ["llama3.2:latest", "2.0", "GB", "llama", "3.2B", "Q4_K_M", "2026-11-20", "08:00:00"]
    assert lines[2].split()[:3] == ["tiny:latest", "520", "KB"]


def test_ps_and_empty_list(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/ps").respond_with_json(
        {"models": [{"name": "tiny:latest", "size": 600_000_000, "size_vram": 0, "expires_at": "2026-11-26T12:05:00Z"}]}
    )
    fake.server.expect_request("/api/tags").respond_with_json({"models": []})
    run(ip, "%ollama ps")
    out = capsys.readouterr().out
    assert "tiny:latest" in out
    assert "600.0 MB" in out
    run(ip, "%ollama list")
    assert "No models on this server" in capsys.readouterr().out


def test_show(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/show", method="POST", json={"model": "tiny"}).respond_with_json(
        {
            "details": {"family": "llama", "parameter_size": "0.1M", "quantization_level": "F32"},
            "capabilities": ["completion"],
            "parameters": "stop <s>",
            "template": "{{ .Prompt }}",
        }
    )
    run(ip, "%ollama show tiny")
    out = capsys.readouterr().out
    assert "Model tiny" in out
    assert "capabilities completion" in " ".join(out.split())
    assert "{{ .Prompt }}" in out


def test_version(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/version").respond_with_json({"version": "0.9.3"})
    run(ip, "%ollama version")
    out = capsys.readouterr().out
    assert f"ollama_magic {__version__}" in out
    assert f"Ollama server 0.9.3 at http://{fake.host}" in out


def test_pull_shows_progress(ip: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        {"status": "pulling manifest"},
        {"status": "pulling abc", "total": 200, "completed": 100},
        {"status": "pulling abc", "total": 200, "completed": 200},
        {"status": "success"},
    ]
    fake.server.expect_request("/api/pull", method="POST").respond_with_data(
        "".join(json.dumps(line) + "\n" for line in lines), content_type="application/x-ndjson"
    )
    terminal = TerminalScreen()  # at a terminal, every update is shown (rewritten in place)
    monkeypatch.setattr(sys, "stdout", terminal)
    run(ip, "%ollama pull tiny")
    out = terminal.getvalue()
    assert "layer 1 of 1 · abc ·  50% · 100 B / 200 B" in out  # progress objects without a digest too
    assert out.rstrip().endswith("Pulled tiny: 1 layers, 200 B, ready to use.")


def test_management_errors_are_one_line(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    fake.server.expect_request("/api/show", method="POST").respond_with_json(
        {"error": "model 'nope' not found"}, status=404
    )
    result = run(ip, "%ollama show nope")
    assert not result.success
    seen = capsys.readouterr()
    assert "ModelNotFoundError: Model 'nope' is not on the Ollama server" in seen.out + seen.err
    result = run(ip, "%ollama frobnicate")
    assert "Unknown %ollama command 'frobnicate'" in "".join(capsys.readouterr())


def test_ollama_alone_or_help_lists_every_command_with_its_usage(ip: Any, capsys: Any) -> None:
    for line in ("%ollama", "%ollama help"):
        run(ip, line)
        out = capsys.readouterr().out
        for usage in (
            "list",
            "ps",
            "show MODEL",
            "pull [--insecure] MODEL",
            "version",
            "threads",
            "reset [THREAD]",
            "ui",
        ):
            assert f"%ollama {usage} " in out
    result = run(ip, "%ollama show")  # a missing argument: the usage, one line, nothing sent
    assert not result.success
    assert "Usage: %ollama show MODEL" in "".join(capsys.readouterr())
