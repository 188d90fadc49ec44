"""How an answer was made, recorded in its output's metadata.

A notebook is saved and shared; each ``%%generate`` output carries, in its metadata
under ``ollama_magic``, the model, the options and fields that shaped the answer, the
thread, the server's version, the time and this package's version, so the saved file
says what produced each answer.  Never the host, headers or keys: a URL may carry a
password, and the metadata travels with the notebook.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..engine.result import GenerationResult

#: Request fields that shape an answer (the prompt and context are the cell and the thread).
_FIELDS = ("options", "format", "system", "template", "suffix", "raw", "think", "truncate", "shift", "keep_alive")


def provenance(result: GenerationResult, *, thread: str | None, server_version: str | None) -> dict[str, Any]:
    """The metadata of one answer's output (JSON-serialisable)."""
    from ..version import __version__

    request = result.request
    record: dict[str, Any] = {
        "model": result.model,
        "requested_model": request.get("model"),
        "thread": thread,
        "server_version": server_version,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "ollama_magic_version": __version__,
        "done_reason": result.done_reason,
        "complete": result.complete,
    }
    for name in _FIELDS:
        if name in request:
            record[name] = request[name]
    if request.get("images"):
        record["images"] = len(request["images"])  # how many, not the pictures themselves
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        # Continued from the thread's messages (/api/chat): how many, not their text (the
        # earlier cells show it); the system and images as for /api/generate.
        record["endpoint"] = "/api/chat"
        record["messages"] = len(messages) - 1
        first, last = messages[0], messages[-1]
        if isinstance(first, dict) and first.get("role") == "system":
            record["system"] = first.get("content")
        if isinstance(last, dict) and last.get("images"):
            record["images"] = len(last["images"])
    if request.get("logprobs"):
        record["top_logprobs"] = request.get("top_logprobs")
    if result.remote_model:
        record["remote_model"] = result.remote_model
    return record
