"""Where the Ollama server is: parse ``OLLAMA_HOST`` the way Ollama itself does.

Ollama accepts ``host``, ``host:port``, ``:port`` and full URLs in ``OLLAMA_HOST``; the
official Python client reads the variable once at import, so changing it in a running
notebook has no effect there.  We read it every time a request is made.

A URL may carry credentials (``https://alice:s3cret@hub.example.edu/ollama``): they are
taken out of the URL, sent as HTTP basic auth, and only the redacted form
(``https://alice:***@hub.example.edu:443/ollama``) is ever shown.  A query string or a
fragment cannot be part of a base URL (the endpoint paths are appended to it), so they
are a clear error rather than silently dropped; the error shows them as ``?…`` and ``#…``,
since that is where people put tokens.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .errors import OllamaMagicError

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434


class HostError(OllamaMagicError, ValueError):
    """The Ollama host setting cannot be a server address; the message shows it redacted."""


@dataclass(frozen=True)
class Host:
    """A parsed server address: the URL requests go to, and the credentials apart from it."""

    url: str  #: scheme://host:port[/path], without credentials, no trailing slash
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The URL as a person may see it: credentials replaced by ``user:***@``."""
        if self.username is None:
            return self.url
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{self.username}:***@{rest}"

    @property
    def auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for HTTP basic auth, if the URL carried credentials."""
        if self.username is None:
            return None
        return (self.username, self.password or "")

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def hostname(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    def __str__(self) -> str:
        return self.shown


def redact(text: str) -> str:
    """A host setting as it may be shown: the password of ``user:password@`` replaced by ``***``.

    >>> redact("http://alice:s3cret@127.0.0.1:99999/x"), redact("bob:p@ss@h:1"), redact("h:1")
    ('http://alice:***@127.0.0.1:99999/x', 'bob:***@h:1', 'h:1')
    """
    scheme, sep, rest = text.rpartition("://")
    at = rest.rfind("@")
    if at < 0:
        return text
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{rest[at + 1 :]}"


def shown_setting(text: str) -> str:
    """A host setting as it may be echoed in a message: credentials, query and fragment hidden.

    A query string or a fragment is where people put tokens (``?token=...``), so an error
    about one must not quote it.

    >>> shown_setting("http://alice:s3cret@h:1/x?token=abc#frag"), shown_setting("h:1#k=v"), shown_setting("h:1")
    ('http://alice:***@h:1/x?…', 'h:1#…', 'h:1')
    """
    for mark in "?#":
        head, sep, _ = text.partition(mark)
        if sep:
            text = f"{head}{mark}…"
    return redact(text)


def parse(host: str | None, source: str = "The Ollama host") -> Host:
    """Parse ``host`` into a :class:`Host`; a :class:`HostError` (one line, redacted) if it cannot be one.

    ``source`` names where the value came from (``OLLAMA_HOST``, ``--host``...) in errors.
    Every request resolves its host again (``OLLAMA_HOST`` may have changed), so the
    parsing is remembered: a :class:`Host` is immutable, and errors are never cached.
    """
    return _parse(host, source)


@functools.lru_cache(maxsize=256)
def _parse(host: str | None, source: str) -> Host:
    text = (host or "").strip()
    shown = shown_setting(text)
    if not text:
        return Host(DEFAULT_HOST)
    scheme, sep, hostport = text.rpartition("://")
    if sep and not scheme:
        raise HostError(f"{source} {shown!r} has no scheme before '://': write e.g. 'http://host:port'.")
    if not scheme:
        scheme = "http"
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise HostError(f"{source} {shown!r} uses {scheme}://: Ollama is reached over http:// or https://.")
    default_port = {"http": 80, "https": 443}[scheme] if sep else DEFAULT_PORT
    split = urlsplit(f"{scheme}://{hostport}")
    if split.query or "?" in hostport:
        raise HostError(
            f"{source} {shown!r} has a query string, which cannot be part of a server address "
            "(the API paths are added after it): remove it; send tokens with %config GenerateMagics.headers."
        )
    if split.fragment or "#" in hostport:
        raise HostError(f"{source} {shown!r} has a '#fragment', which cannot be part of a server address: remove it.")
    netloc = split.netloc
    userinfo, at, hostpart = netloc.rpartition("@")
    if sep and (not hostpart.strip() or hostpart.startswith(":")):
        raise HostError(f"{source} {shown!r} names no server: write e.g. 'http://127.0.0.1:11434'.")
    name = split.hostname or "127.0.0.1"
    # Ollama binds 0.0.0.0 to listen everywhere; a client cannot connect to it.
    if name in ("0.0.0.0", "::"):
        name = "127.0.0.1"
    try:
        port = split.port or default_port
    except ValueError:
        raise HostError(f"{source} {shown!r} has an invalid port (it must be a number from 1 to 65535).") from None
    if ":" in name:
        name = f"[{name}]"
    path = split.path.rstrip("/")
    username = password = None
    if at:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user), unquote(secret)
    return Host(f"{scheme}://{name}:{port}{path}", username, password)


def parse_host(host: str | None) -> str:
    """Return a base URL (scheme, host and port, no trailing slash, no credentials) for ``host``.

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
    return parse(host).url


def resolve(explicit: str | None = None) -> Host:
    """The server to use now: ``explicit`` if given, else ``OLLAMA_HOST``, else the default."""
    if explicit:
        return parse(explicit, "The Ollama host")
    return parse(os.environ.get("OLLAMA_HOST"), "OLLAMA_HOST")


def resolve_host(explicit: str | None = None) -> str:
    """The base URL to use now (without credentials)."""
    return resolve(explicit).url
