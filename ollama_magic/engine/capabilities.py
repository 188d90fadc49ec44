"""What a model can take, from the server's own word (``/api/show``'s ``capabilities``).

Why this exists: Ollama accepts ``images`` for a model without vision and silently drops
them; the model then answers as if it had seen a picture (smollm2, asked "What is in this
picture?" with a PNG, described "the iconic Star Wars movie trailer").  A person cannot tell
that answer from a real one, so images sent to a model that says it has no ``vision`` are
refused here, in one line, before anything is generated.

A server that does not report capabilities (older than Ollama 0.6) or cannot be asked is
trusted, as before: the request goes out unchanged.  Answers are remembered per server and
model for the life of the process (a model's capabilities come from its files, which a pull
or create replaces under a new digest; ``forget()`` clears the memory).
"""

from __future__ import annotations

import threading

from .client import OllamaClient
from .errors import InvalidRequestError, OllamaMagicError
from .terminal import printable

_known: dict[tuple[str, str], frozenset[str] | None] = {}
_lock = threading.Lock()


def capabilities(client: OllamaClient, model: str) -> frozenset[str] | None:
    """The model's capabilities as the server reports them (e.g. ``{"completion", "vision"}``),
    or None when the server does not say (an older server, a model it cannot find, no answer)."""
    key = (client.base_url, model)
    with _lock:
        if key in _known:
            return _known[key]
    try:
        shown = client.show(model)
    except OllamaMagicError:
        return None  # the generation itself will say what is wrong, in its own words
    listed = shown.get("capabilities") if isinstance(shown, dict) else None
    found = frozenset(str(c) for c in listed) if isinstance(listed, list) else None
    with _lock:
        _known[key] = found
    return found


def check_images(client: OllamaClient, model: str) -> None:
    """Refuse images for a model that says it cannot see them (nothing is generated)."""
    found = capabilities(client, model)
    if found is None or "vision" in found:
        return
    said = ", ".join(sorted(printable(c) for c in found)) or "none"
    raise InvalidRequestError(
        f"{printable(model)} cannot see images (the server lists its capabilities as: {said}), so it would "
        "answer without them; use a model with vision (e.g. llava, gemma3, qwen2.5vl) or leave out the images."
    )


def forget() -> None:
    """Forget what servers said (after a model was replaced under the same name)."""
    with _lock:
        _known.clear()
