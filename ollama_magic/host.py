"""Where the Ollama server is: parse ``OLLAMA_HOST`` the way Ollama itself does.

Ollama accepts ``host``, ``host:port``, ``:port`` and full URLs in ``OLLAMA_HOST``; the
official Python client reads the variable once at import, so changing it in a running
notebook has no effect there.  We read it every time a request is made.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434


def parse_host(host: str | None) -> str:
    """Return a base URL (scheme, host and port, no trailing slash) for ``host``.

    >>> parse_host(None)
    'http://127.0.0.1:11434'
    >>> parse_host("")
    'http://127.0.0.1:11434'
    >>> parse_host("example.com")
    'http://example.com:11434'
    >>> parse_host("example.com:56789")
    'http://example.com:56789'
    >>> parse_host(":56789")
    'http://127.0.0.1:56789'
    >>> parse_host("0.0.0.0")
    'http://127.0.0.1:11434'
    >>> parse_host("https://example.com")
    'https://example.com:443'
    >>> parse_host("http://example.com/")
    'http://example.com:80'
    >>> parse_host("http://[::1]:8080/path/")
    'http://[::1]:8080/path'
    """
    host = (host or "").strip()
    if not host:
        return DEFAULT_HOST
    scheme, _, hostport = host.rpartition("://")
    if not scheme:
        scheme = "http"
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT) if _ else DEFAULT_PORT
    split = urlsplit(f"{scheme}://{hostport}")
    name = split.hostname or "127.0.0.1"
    # Ollama binds 0.0.0.0 to listen everywhere; a client cannot connect to it.
    if name in ("0.0.0.0", "::"):
        name = "127.0.0.1"
    try:
        port = split.port or default_port
    except ValueError as exc:
        raise ValueError(f"invalid port in Ollama host {host!r}") from exc
    if ":" in name:
        name = f"[{name}]"
    path = split.path.rstrip("/")
    return f"{scheme}://{name}:{port}{path}"


def resolve_host(explicit: str | None = None) -> str:
    """The base URL to use now: ``explicit`` if given, else ``OLLAMA_HOST``, else the default."""
    if explicit:
        return parse_host(explicit)
    return parse_host(os.environ.get("OLLAMA_HOST"))
