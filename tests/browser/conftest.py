"""Browser fixtures: a real JupyterLab server and a headless Chromium driven by Playwright.

What a person sees in JupyterLab is tested here, in the page itself.  Needs:

- ``/usr/bin/chromium`` (Debian's; ``scripts/browser-deps`` installs it).  Playwright's own
  browsers are never used or downloaded (do not run ``playwright install``);
- the Python packages ``playwright`` and ``jupyterlab``;
- for the tests that talk to a real model, ``OLLAMA_E2E_HOST`` (as in tests/e2e/).

Anything missing skips the tests with the reason, so ``pytest`` still passes on a laptop.

JupyterLab, Notebook 7 and Voilà are started by tests/browser/jupyter_server.py from this
interpreter, on a free loopback port with a token, with every Jupyter and IPython folder
temporary (nothing from ``~`` leaks in); their environment carries ``OLLAMA_HOST`` so
kernels reach the real server.  Each is stopped by its PID at the end, and so are the
kernels it started, should any outlive it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import jupyter_server
from .jupyter_server import Lab, LabError
from .jupyterlab_page import CHROMIUM, CHROMIUM_ARGS, SHOTS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: tests in a real JupyterLab page (need chromium, playwright)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


def _need_browser_tools() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/browser-deps (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
    pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")


# -- JupyterLab -------------------------------------------------------------------------


def start_jupyter(base: Path, module: str, *args: str, **kwargs: Any) -> tuple[Lab, Callable[[], None]]:
    """jupyter_server.start_jupyter for a test: OLLAMA_HOST from OLLAMA_E2E_HOST unless given
    (without one, tests against the real server skip; the others name --host), and a server
    that does not come up is the test's failure, with the end of its log."""
    kwargs.setdefault("ollama_host", os.environ.get("OLLAMA_E2E_HOST", "").removeprefix("OLLAMA_HOST=") or None)
    try:
        return jupyter_server.start_jupyter(base, module, *args, **kwargs)
    except LabError as exc:
        pytest.fail(str(exc))


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


@contextlib.contextmanager
def scripted_server(
    path: str, respond: Callable[[Any], Any], method: str = "POST", json: dict[str, Any] | None = None
) -> Iterator[str]:
    """A scripted Ollama on 127.0.0.1 answering ``path`` with ``respond`` (threaded, so a slow
    answer does not hold up the next request), and each path of ``json`` with that JSON;
    yields its ``host:port``."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(path, method=method).respond_with_handler(respond)
    for other, answer in (json or {}).items():
        server.expect_request(other).respond_with_json(answer)
    server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.clear()
        if server.is_running():
            server.stop()


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
