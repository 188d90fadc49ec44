"""Browser fixtures: a real JupyterLab server and a headless Chromium driven by Playwright.

What a person sees in JupyterLab is tested here, in the page itself.  Needs:

- ``/usr/bin/chromium`` (Debian's; ``scripts/browser-deps`` installs it).  Playwright's own
  browsers are never used or downloaded (do not run ``playwright install``);
- the Python packages ``playwright`` and ``jupyterlab``;
- for the tests that talk to a real model, ``OLLAMA_E2E_HOST`` (as in tests/e2e/).

Anything missing skips the tests with the reason, so ``pytest`` still passes on a laptop.

JupyterLab runs from this interpreter (``python -m jupyterlab``) on a free loopback port
with a token, in a temporary root folder, with its config, data, runtime, settings,
workspace and IPython folders all temporary too (nothing from ``~`` leaks in).  Its
environment carries ``OLLAMA_HOST`` so kernels reach the real server.  It is stopped by
its PID at the end, and so are the kernels it started, should any outlive it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .jupyterlab_page import SHOTS

CHROMIUM = os.environ.get("OLLAMA_BROWSER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAB_START_TIMEOUT = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: tests in a real JupyterLab page (need chromium, playwright)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need_browser_tools() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/browser-deps (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
    pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")


# -- JupyterLab -------------------------------------------------------------------------


@dataclass
class Lab:
    """A running JupyterLab server: where it is and how to open a notebook in it."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def notebook_url(self, name: str) -> str:
        # ``reset`` starts from an empty workspace, so notebooks of earlier tests do not reopen.
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """End the kernels of all sessions (a test's notebook), through the server's REST API."""
        headers = {"Authorization": f"token {self.token}"}
        with contextlib.suppress(requests.RequestException, ValueError):
            for session in requests.get(f"{self.url}/api/sessions", headers=headers, timeout=10).json():
                requests.delete(f"{self.url}/api/sessions/{session['id']}", headers=headers, timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _children(pid: int) -> list[Any]:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing, or the process is gone
        return []


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server we started (SIGTERM, then SIGKILL), then any of its kernels still alive."""
    children = _children(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for child in children:  # psutil.Process checks the PID was not reused before signalling
        with contextlib.suppress(Exception):
            child.terminate()
            child.wait(timeout=5)
        with contextlib.suppress(Exception):
            child.kill()


def start_jupyter(
    base: Path, module: str, *args: str, what: str = "jupyter lab", env_extra: dict[str, str] | None = None
) -> tuple[Lab, Any]:
    """Start ``python -m module`` (JupyterLab, Notebook 7 or Voilà) on a free loopback port with a
    token, every Jupyter and IPython folder under ``base``, OLLAMA_HOST set for its kernels.

    Returns the server and a function that stops it (by its PID, kernels after it)."""
    root = base / "root"
    root.mkdir()
    dirs = {
        name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython", "home-cache")
    }
    for path in dirs.values():
        path.mkdir()
    # No "get notified about official Jupyter news?" toast over the notebook, no update check.
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        IPYTHONDIR=str(dirs["ipython"]),
        XDG_CACHE_HOME=str(dirs["home-cache"]),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_CONFIG_PATH", None)
    host = os.environ.get("OLLAMA_E2E_HOST", "").removeprefix("OLLAMA_HOST=")
    if host:
        env["OLLAMA_HOST"] = host
    else:
        env.pop("OLLAMA_HOST", None)  # tests against the real server skip; the others name --host
    env.update(env_extra or {})

    port = _free_port()
    token = secrets.token_hex(16)
    log = base / "server.log"
    command = [
        sys.executable,
        "-m",
        module,
        *args,
        "--no-browser",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
    ]
    if module == "voila":
        command += ["--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]
    else:
        command += ["--ip=127.0.0.1", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if module == "jupyterlab":
        command += [
            "--LabApp.news_url=None",  # never ask the internet for news or updates
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    if module != "voila" and hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root; Jupyter refuses root without it
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, process=process, log=log)
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}:\n{server.log_tail()}")
            if module == "voila":  # any GET there runs the notebook: its log says when it listens
                if f"127.0.0.1:{port}" in server.log_tail(20_000):
                    break
            else:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{server.url}/api/status", params={"token": token}, timeout=2).ok:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not answer within {LAB_START_TIMEOUT:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        _stop(process)
        raise
    return server, lambda: _stop(process)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server on a free loopback port, with OLLAMA_HOST set for its kernels."""
    _need_browser_tools()
    server, stop = start_jupyter(tmp_path_factory.mktemp("jupyterlab"), "jupyterlab")
    try:
        yield server
    finally:
        stop()


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A Jupyter Notebook 7 server, as ``lab`` (its notebooks open at /notebooks/NAME)."""
    _need_browser_tools()
    pytest.importorskip("notebook", reason="the Notebook 7 tests need `pip install notebook`")
    server, stop = start_jupyter(tmp_path_factory.mktemp("notebook7"), "notebook", what="jupyter notebook")
    try:
        yield server
    finally:
        stop()


# -- Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (never a browser Playwright downloads)."""
    _need_browser_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies, storage or cache from other tests) and its page.

    On failure a screenshot is kept in ``SHOTS`` as ``FAILED-<test>.png``, and the page's
    errors and the end of JupyterLab's log are printed (pytest shows them with the failure).
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            SHOTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):
                page.screenshot(path=str(SHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
            print("page errors:", *errors, sep="\n  ")
            print("end of the JupyterLab log:\n" + lab.log_tail())
        context.close()
        lab.shutdown_kernels()  # each test's kernel ends with it; no CPU spent on idle kernels


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


# -- a fake Ollama for what the tiny models cannot say -----------------------------------


@pytest.fixture
def fake_ollama() -> Iterator[Any]:
    """A scripted Ollama on 127.0.0.1 (its own pytest-httpserver, not the shared fixture)."""
    httpserver = pytest.importorskip("pytest_httpserver")
    server = httpserver.HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()
