"""End-to-end fixtures: a real Ollama server, named by ``OLLAMA_E2E_HOST``.

``scripts/local-ollama start`` provisions one (``.ci/run`` does it on every CI run) with
the models ``tiny`` ("Hey now!", then stops) and ``tiny-long`` (goes on until
``num_predict``).  Without ``OLLAMA_E2E_HOST`` these tests are skipped with that reason,
so ``pytest`` alone still passes on a laptop without Ollama.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

SHORT = os.environ.get("OLLAMA_E2E_MODEL", "tiny")
LONG = os.environ.get("OLLAMA_E2E_LONG_MODEL", "tiny-long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def real_host() -> str:
    """``host:port`` of the real Ollama server, checked to answer; else the test is skipped."""
    host = os.environ.get("OLLAMA_E2E_HOST", "").removeprefix("OLLAMA_HOST=")
    if not host:
        pytest.skip("no real Ollama server: run `scripts/local-ollama start` and set OLLAMA_E2E_HOST=host:port")
    from ollama_magic.host import parse_host

    url = parse_host(host)
    try:
        models = {m["name"].split(":")[0] for m in requests.get(f"{url}/api/tags", timeout=10).json()["models"]}
    except (requests.RequestException, ValueError, KeyError) as exc:
        pytest.fail(f"OLLAMA_E2E_HOST={host} is set but the server does not answer /api/tags: {exc}")
    missing = {SHORT, LONG} - models
    if missing:
        pytest.fail(
            f"the Ollama server at {url} lacks the test models {sorted(missing)}: run scripts/local-ollama start"
        )
    return host


@pytest.fixture
def real_ip(real_host: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell with the extension loaded, pointed at the real server through OLLAMA_HOST."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    monkeypatch.setenv("OLLAMA_HOST", real_host)
    shell = start_ipython() or get_ipython()
    shell.config.pop("GenerateMagics", None)
    shell.run_line_magic("reload_ext", "ollama_magic")
    yield shell
    shell.run_line_magic("unload_ext", "ollama_magic")


@pytest.fixture
def real_nb(real_ip: Any) -> Iterator[Any]:
    """``real_ip`` made notebook-like, as tests/conftest.py's ``nb`` does for the fake server.

    The magic then uses its live display handle; every display message is recorded in
    ``real_nb.publisher.messages`` (``data``, ``transient``, ``update``).
    """
    from ..conftest import RecordingPublisher

    publisher = RecordingPublisher(shell=real_ip)
    old_pub = real_ip.display_pub
    real_ip.display_pub = publisher
    real_ip.kernel = object()
    real_ip.publisher = publisher
    yield real_ip
    real_ip.display_pub = old_pub
    del real_ip.kernel
    del real_ip.publisher
