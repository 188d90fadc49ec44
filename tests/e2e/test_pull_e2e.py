"""``%ollama pull`` against a real registry: Debian's docker-registry on loopback (behind nginx,
which redirects blob downloads to another host name as Ollama's registry does to its CDN),
holding a 40 MB test model pushed there by a real Ollama with ``ollama push --insecure``.

The pulls run on a private server (a clone of the shared one), so the shared server's
model list never changes.  ``scripts/local-registry`` does the set-up; ``.ci/run`` installs
its Debian packages.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ..conftest import TerminalScreen, notebook_like
from ..test_pull import screen
from .servers import OllamaServer
from .support import HEY, REPO, run
from .test_failures_e2e import private_server  # noqa: F401 - a fixture

SCRIPT = REPO / "scripts" / "local-registry"


@pytest.fixture(scope="module")
def registry_model(private_server: OllamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    if not (shutil.which("docker-registry") and shutil.which("nginx")):
        pytest.skip("docker-registry and nginx are not installed (scripts/local-registry install)")
    folder = tmp_path_factory.mktemp("registry")

    def script(*args: str) -> str:
        done = subprocess.run(
            [str(SCRIPT), *args, "--dir", str(folder)], capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return (done.stdout.strip().splitlines() or [""])[-1]

    script("start")
    try:
        line = script("push", "--ollama-dir", str(private_server.folder), "--pad-mb", "40")
        yield line.removeprefix("MODEL=")
    finally:
        script("stop")


def _delete(host: str, model: str) -> None:
    requests.delete(f"http://{host}/api/delete", json={"model": model}, timeout=30)


def test_a_pull_from_a_real_registry_shows_progress_then_the_model_answers(
    real_ip: Any,
    private_server: OllamaServer,  # noqa: F811 - the fixture imported above
    registry_model: str,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", private_server.host)
    _delete(private_server.host, registry_model)
    terminal = TerminalScreen()  # a person at a terminal (a log gets a line per step instead)
    monkeypatch.setattr(sys, "stdout", terminal)
    result = run(real_ip, f"%ollama pull --insecure {registry_model}")
    assert result.success, result.error_in_exec
    out = terminal.getvalue()
    frames = [f.strip() for f in out.split("\r") if f.strip()]
    progress = [f for f in frames if " MB" in f and "layer 1 of" in f and "%" in f]
    assert progress, frames  # the layer, its percentage and MB done of total were shown
    assert any("/ 40." in f for f in progress), progress  # the padded layer: about 40 MB
    assert screen(out)[-1].startswith(f"Pulled {registry_model}: ")
    assert len(screen(out)) == 1  # one line in the terminal, rewritten in place
    names = [m["name"] for m in requests.get(f"http://{private_server.host}/api/tags", timeout=10).json()["models"]]
    assert f"{registry_model}:latest" in names
    answer = run(real_ip, f"%generate -m {registry_model} --no-context Hi.")
    assert answer.success
    assert HEY in terminal.getvalue()[len(out) :]


def test_a_pull_in_a_notebook_shows_a_widget_bar_and_saves_the_result_line(
    real_ip: Any,
    private_server: OllamaServer,  # noqa: F811 - the fixture imported above
    registry_model: str,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", private_server.host)
    _delete(private_server.host, registry_model)
    with notebook_like(real_ip) as shell:
        result = run(shell, f"%ollama pull --insecure {registry_model}")
        assert result.success, result.error_in_exec
        views = [m for m in shell.publisher.messages if "application/vnd.jupyter.widget-view+json" in m.get("data", {})]
        assert len(views) == 1
    assert f"Pulled {registry_model}: " in capsys.readouterr().out


def test_without_internet_the_pull_is_one_line_saying_what_to_do(
    real_ip: Any,
    private_server: OllamaServer,  # noqa: F811 - the fixture imported above
    capsys: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", private_server.host)
    capsys.readouterr()
    result = run(real_ip, "%ollama pull qwen2.5:0.5b")
    assert not result.success
    seen = capsys.readouterr()
    lines = screen(seen.out + seen.err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("RegistryUnreachableError: ")
    assert "cannot reach Ollama's model registry" in lines[0] and "dial tcp" not in lines[0]


def test_a_registry_without_tls_needs_insecure(
    real_ip: Any,
    private_server: OllamaServer,  # noqa: F811 - the fixture imported above
    registry_model: str,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", private_server.host)
    _delete(private_server.host, registry_model)
    capsys.readouterr()
    assert not run(real_ip, f"%ollama pull {registry_model}").success
    seen = capsys.readouterr()
    lines = screen(seen.out + seen.err)
    assert len(lines) == 1 and "--insecure" in lines[0], lines
