"""A real Ollama with a full queue answers 503, and %%generate waits it out in the cell.

Ollama 0.9.3 answers HTTP 503 "server busy, please try again.  maximum pending requests
exceeded" when more than ``OLLAMA_MAX_QUEUE`` requests wait for its scheduler.  A request
for a model that is already loaded does not wait there (it waits inside the model's
runner for one of ``OLLAMA_NUM_PARALLEL`` slots), so one model alone never fills the
queue; what does is a request that needs another model loaded while
``OLLAMA_MAX_LOADED_MODELS`` is reached: the scheduler then holds it, and the requests
behind it wait in the queue.  This test builds exactly that on a private server
(``OLLAMA_NUM_PARALLEL=1 OLLAMA_MAX_QUEUE=1 OLLAMA_MAX_LOADED_MODELS=1``), checks that a
plain request really gets the 503, then shows the cell retrying until it gets through.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import LONG, SHORT
from .servers import OllamaServer, private_ollamas
from .support import HEY, ollama_server_dir, run, url, wait_until

QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture(scope="module")
def crowded_server(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    source = ollama_server_dir(real_host)
    if source is None:
        pytest.skip("the folder of the server at OLLAMA_E2E_HOST is unknown: set OLLAMA_E2E_DIR to it")
    root = tmp_path_factory.mktemp("crowded-ollama")
    env = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "1", "OLLAMA_MAX_LOADED_MODELS": "1"}
    try:
        with private_ollamas(source, root, 1, env) as servers:
            yield servers[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_full_queue_is_waited_out_with_the_wait_shown_in_the_cell(crowded_server: OllamaServer, real_nb: Any) -> None:
    base = url(crowded_server.host)
    # 1. The one slot is busy with a long answer from one model...
    blocker = requests.post(
        f"{base}/api/generate",
        json={"model": LONG, "prompt": "hi", "options": {"num_predict": 100000}},
        stream=True,
        timeout=120,
    )
    assert blocker.status_code == 200
    lines = blocker.iter_lines()
    assert b'"response"' in next(lines)

    # 2. ...requests for the other model wait for it, until the queue is full and Ollama
    # answers 503 (plain requests, no ollama_magic: this is the server's own behaviour).
    statuses: list[tuple[int, str]] = []

    def plain_request() -> None:
        r = requests.post(f"{base}/api/generate", json={"model": SHORT, "prompt": "hi", "stream": False}, timeout=300)
        statuses.append((r.status_code, r.text))

    fillers = []
    for _ in range(6):
        fillers.append(threading.Thread(target=plain_request, daemon=True))
        fillers[-1].start()
        if wait_until(lambda: any(s == 503 for s, _ in statuses), timeout=1.0):
            break
    assert (503, f'{{"error":"{QUEUE_FULL}"}}') in statuses, statuses

    # 3. A cell now meets the full queue: it shows the wait and retries.  Once the cell has
    # shown its first "server busy" line, the long answer is stopped, the queue drains,
    # and a retry gets through.
    def release_when_the_cell_waits() -> None:
        shown = lambda: any(  # noqa: E731
            "server busy: retry 1 of 30 in " in m.get("data", {}).get("text/plain", "")
            for m in list(real_nb.publisher.messages)
        )
        wait_until(shown, timeout=120)
        blocker.close()

    releaser = threading.Thread(target=release_when_the_cell_waits, daemon=True)
    releaser.start()
    real_nb.user_ns.pop("r", None)
    outcome = run(
        real_nb, f"%%generate -m {SHORT} --host {crowded_server.host} --busy-retries 30 --no-context -o r\nhi"
    )
    blocker.close()
    releaser.join(10)
    for thread in fillers:
        thread.join(120)
    assert outcome.success, outcome.error_in_exec
    result = real_nb.user_ns["r"]
    assert result.text == HEY and result.complete
    assert result.busy_retries >= 1
    shown = [m["data"]["text/plain"] for m in real_nb.publisher.messages if "data" in m]
    first_busy = next(i for i, t in enumerate(shown) if "server busy" in t)
    assert all(t.startswith("Waiting for ") for t in shown[:first_busy])  # only the waiting line before it
    assert "server busy: retry 1 of 30 in " in shown[first_busy].splitlines()[-1]
    # The answer replaced the waiting line, and appears once.
    assert shown[-1].startswith(HEY) and shown[-1].count(HEY) == 1
    assert "server busy" not in shown[-1]
