"""The server settings docs/teaching.md gives a teacher, checked on real Ollama 0.9.3 servers.

- ``OLLAMA_NUM_PARALLEL`` slots each get their own context: the model runner is started
  with ``--ctx-size`` = num_ctx x slots, and its KV cache (the "KV self size" it logs)
  grows in proportion.  That multiplication is the memory a teacher must plan for.
- ``OLLAMA_KEEP_ALIVE`` is how long a model stays loaded after the last request.

Two private servers (clones of the shared one), one slot and four slots.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import SHORT
from .servers import OllamaServer, children, private_ollamas
from .support import ollama_server_dir, run


@pytest.fixture(scope="module")
def one_and_four_slots(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OllamaServer]]:
    source = ollama_server_dir(real_host)
    if source is None:
        pytest.skip("the folder of the server at OLLAMA_E2E_DIR is unknown: set OLLAMA_E2E_DIR to it")
    root = tmp_path_factory.mktemp("slots")
    try:
        with (
            private_ollamas(source, root / "one", 1, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_KEEP_ALIVE": "1h"}) as one,
            private_ollamas(source, root / "four", 1, {"OLLAMA_NUM_PARALLEL": "4"}) as four,
        ):
            yield [one[0], four[0]]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def runner_arguments(server: OllamaServer) -> str:
    """The command line of the server's model runner (its one child process)."""
    lines = [Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ") for pid in children(server.pid)]
    runners = [line for line in lines if " runner " in line]
    assert len(runners) == 1, lines
    return runners[0]


def kv_cache_mib(server: OllamaServer, offset: int) -> float:
    """The KV cache size the runner logged when it loaded the model (after ``offset``)."""
    sizes = re.findall(r"KV self size\s*=\s*([\d.]+) MiB", server.log_since(offset))
    assert sizes, "the runner logged no KV cache size"
    return float(sizes[-1])


def test_every_parallel_slot_holds_its_own_context(
    one_and_four_slots: list[OllamaServer], real_ip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    caches = []
    for server, slots in zip(one_and_four_slots, (1, 4), strict=True):
        offset = server.log.stat().st_size
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        assert run(real_ip, f"%generate -m {SHORT} --num-ctx 1024 --no-context --quiet hi").success
        arguments = runner_arguments(server)
        assert f"--ctx-size {1024 * slots} " in arguments and f"--parallel {slots} " in arguments
        caches.append(kv_cache_mib(server, offset))
    assert caches[1] == 4 * caches[0] > 0


def test_keep_alive_keeps_the_model_loaded_that_long(
    one_and_four_slots: list[OllamaServer], real_ip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = one_and_four_slots[0]  # OLLAMA_KEEP_ALIVE=1h
    monkeypatch.setenv("OLLAMA_HOST", server.host)
    assert run(real_ip, f"%generate -m {SHORT} --no-context --quiet hi").success
    loaded = requests.get(f"http://{server.host}/api/ps", timeout=10).json()["models"]
    until = datetime.fromisoformat(loaded[0]["expires_at"])
    left = (until - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < left <= 3600
