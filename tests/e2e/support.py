"""Helpers for the end-to-end tests (no fixtures here: those live in conftest.py).

Facts about the test models that the assertions rely on, checked against Ollama 0.9.3:

- ``tiny`` answers "Hey now!" (9 tokens) and stops; ``tiny-long`` repeats "Hey now! "
  until ``num_predict``.  Both are deterministic (the seed and temperature change nothing).
- Their tokenizer gives one token per character, plus a leading-space token and BOS, so
  ``prompt_eval_count`` is the length of the rendered prompt + 2: "hi" -> 4.  That makes the
  server's own count an exact witness of what the template rendered (system, suffix, ...).
- A ``context`` sent back is detokenized and prepended to the prompt by the server, so the
  next answer's ``context`` contains the previous one as a contiguous run.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from ollama_magic.engine.host import parse_host

REPO = Path(__file__).resolve().parents[2]
HEY = "Hey now!"


def url(host: str) -> str:
    return parse_host(host)


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_generate(host: str, **body: Any) -> dict[str, Any]:
    """POST /api/generate directly (no ollama_magic), non-streamed: the reference answer."""
    body.setdefault("stream", False)
    response = requests.post(f"{url(host)}/api/generate", json=body, timeout=60)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def unload(host: str, model: str, timeout: float = 120.0) -> None:
    """Unload ``model`` and wait until /api/ps no longer lists it.

    An earlier test may have cancelled a request while the model was loading: Ollama then
    answers the next request for it with HTTP 500 ("client connection closed before server
    finished loading", or a load aborted some other way) until that load is over.  That is
    the server catching up, not a failure of the test that follows: ask again until it is idle.
    """
    end = time.monotonic() + timeout
    while True:
        response = requests.post(
            f"{url(host)}/api/generate", json={"model": model, "prompt": "", "keep_alive": 0}, timeout=60
        )
        if response.ok or time.monotonic() > end:
            break
        time.sleep(0.2)
    response.raise_for_status()
    assert wait_until(lambda: model not in loaded_models(host), timeout=max(1.0, end - time.monotonic()))


def loaded_models(host: str) -> set[str]:
    """Names in GET /api/ps, without the ``:latest`` tag."""
    models = requests.get(f"{url(host)}/api/ps", timeout=10).json().get("models") or []
    return {m["name"].removesuffix(":latest") for m in models}


def wait_until(predicate: Any, timeout: float = 5.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)


def contains_run(haystack: Sequence[int], needle: Sequence[int]) -> bool:
    """True if ``needle`` occurs in ``haystack`` as a contiguous run."""
    n = len(needle)
    return any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def png_bytes() -> bytes:
    """A valid 1x1 green PNG, made here (no file, no PIL)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00\xff\x00"))
        + chunk(b"IEND", b"")
    )


def png_base64() -> str:
    return base64.b64encode(png_bytes()).decode("ascii")


def run(shell: Any, cell: str, cell_id: str | None = None) -> Any:
    """Run a cell as a frontend would and return IPython's ExecutionResult."""
    return shell.run_cell(cell, store_history=True, cell_id=cell_id)


def failing_cell(shell: Any, capsys: Any, cell: str) -> str:
    """Run a cell that must fail; return what the person sees (stdout + stderr)."""
    capsys.readouterr()
    result = run(shell, cell)
    assert not result.success, f"the cell should have failed: {cell!r}"
    captured = capsys.readouterr()
    return captured.out + captured.err


def assert_one_line(seen: str) -> str:
    """The error is exactly one line, with no traceback; returns that line."""
    lines = [line for line in seen.strip().splitlines() if line.strip()]
    assert "Traceback" not in seen, seen
    assert len(lines) == 1, seen
    return lines[0]


def ollama_server_dir(host: str) -> Path | None:
    """The folder of the ``scripts/local-ollama`` server answering at ``host``.

    ``OLLAMA_E2E_DIR`` if set; otherwise the working directory of the ``ollama ... serve``
    process whose environment has ``OLLAMA_HOST=host`` (the script starts it inside its
    folder).  None if it cannot be found (a server not started by the script).
    """
    if os.environ.get("OLLAMA_E2E_DIR"):
        return Path(os.environ["OLLAMA_E2E_DIR"])
    wanted = parse_host(host)
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if len(argv) < 2 or b"ollama" not in os.path.basename(argv[0]) or argv[1] != b"serve":
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            hosts = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"OLLAMA_HOST=")]
            if not hosts or parse_host(hosts[0]) != wanted:
                continue
            folder = Path(os.readlink(f"/proc/{entry}/cwd"))
        except (OSError, ValueError):
            continue
        if (folder / "models").is_dir() and (folder / "mdl").is_dir():
            return folder
    return None


def json_output(outputs: list[Any]) -> dict[str, Any]:
    """The JSON object a cell printed (its stdout stream output)."""
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")
    return json.loads(text)  # type: ignore[no-any-return]
