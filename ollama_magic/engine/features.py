"""Fields newer Ollama servers understand, and telling a person when theirs ignored one.

Ollama ignores JSON fields it does not know, so asking a 0.9.3 server for token
probabilities (``logprobs``, 0.12.11) or for ``truncate: false`` (0.12.6) answers as if
nothing had been asked.  A person who asked deserves to know: :func:`ignored_field_notes`
says so in one line per field.  Token probabilities are missing from the answer itself;
``truncate`` and ``shift`` leave no trace in it, so for those the server's version is
asked (one small request, only when they were sent).  Fields a server *rejects* (a think
level on 0.9.3) need nothing here: the server's own error reaches the person.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .result import GenerationResult

#: field -> (first Ollama version that honours it, what ignoring it means)
VERSION_NEEDED: dict[str, tuple[tuple[int, int, int], str]] = {
    "truncate": ((0, 12, 6), "a prompt longer than the context is still cut silently"),
    "shift": ((0, 12, 6), "a full context still drops its start silently"),
}
LOGPROBS_VERSION = "0.12.11"


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """``"0.12.11-rc1"`` → ``(0, 12, 11)``; None for what is not a release (``0.0.0`` dev builds).

    >>> parse_version("0.9.3"), parse_version("v0.12.11-rc1"), parse_version("0.0.0"), parse_version("x")
    ((0, 9, 3), (0, 12, 11), None, None)
    """
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", (text or "").strip())
    if not match:
        return None
    version = (int(match[1]), int(match[2]), int(match[3]))
    return version if version != (0, 0, 0) else None


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def ignored_field_notes(
    payload: dict[str, Any],
    result: GenerationResult,
    server_version: Callable[[], str | None],
) -> list[str]:
    """One line for each field of ``payload`` that the server evidently ignored.

    ``server_version`` is called (at most once) only when a field can be judged by the
    server's version alone; it may return None when the version is unknown.
    """
    notes = []
    generated = bool(result.text) or bool(result.stats.eval_count)
    if payload.get("logprobs") and result.complete and generated and not result.logprobs:
        notes.append(f"this server returned no token probabilities: they need Ollama {LOGPROBS_VERSION} or newer.")
    # true is what every server does anyway; only false changes anything.
    asked = [name for name in VERSION_NEEDED if payload.get(name) is False]
    if asked:
        version = parse_version(server_version())
        for name in asked:
            needed, meaning = VERSION_NEEDED[name]
            if version is not None and version < needed:
                notes.append(
                    f"this server (Ollama {_dotted(version)}) ignores {name}: false; it needs Ollama "
                    f"{_dotted(needed)} or newer ({meaning})."
                )
    return notes
