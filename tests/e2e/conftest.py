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

from ..conftest import LONG, SHORT, notebook_like

__all__ = ["LONG", "SHORT"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


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
    """``real_ip`` made notebook-like, as tests/conftest.py's ``nb`` does for the fake server."""
    with notebook_like(real_ip) as shell:
        yield shell
