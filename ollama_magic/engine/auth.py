"""Credentials for the server: configured headers, basic auth from the URL, Ollama's API key.

Three ways to authenticate, combined per request for the host it goes to:

- ``GenerateMagics.headers`` (``generate(headers=)``): sent with every request to the
  configured server, e.g. ``{"Authorization": "Bearer ..."}`` for a proxy.  They win.
- ``https://user:password@host/...`` in the host: HTTP basic auth (see :mod:`.host`).
- ``OLLAMA_API_KEY``: sent as ``Authorization: Bearer`` to ``https://ollama.com`` (Ollama's
  cloud), and to another host only when the person opted in for that host, with
  ``OLLAMA_API_KEY_HOSTS=host1,host2`` or ``GenerateMagics.api_key_hosts``.  The official
  client sends the key to every host it talks to, which hands it to whatever proxy or
  classroom server the notebook points at; here it goes where it was meant for.

Nothing here is ever shown: errors name header *names* at most.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import OllamaMagicError
from .host import Host, parse

#: Where OLLAMA_API_KEY always goes (Ollama's cloud), over https only.
CLOUD_HOSTS = ("ollama.com",)


class CredentialsError(OllamaMagicError, ValueError):
    """A headers or verify setting that cannot be used; nothing was sent."""


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers as a plain dict of strings; a one-line error (naming no value) if unusable."""
    if not headers:
        return {}
    if not isinstance(headers, Mapping):
        raise CredentialsError("headers must be a dict of header names to values, e.g. {'Authorization': 'Bearer …'}.")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or any(c in name for c in ":\r\n \t"):
            raise CredentialsError(f"{name!r} is not a valid HTTP header name.")
        if not isinstance(value, str):
            raise CredentialsError(f"The value of header {name!r} must be a string.")
        if "\r" in value or "\n" in value:
            raise CredentialsError(f"The value of header {name!r} contains a line break.")
        out[name] = value
    return out


def check_verify(verify: bool | str | None) -> bool | str:
    """requests' ``verify``: True (default, honours REQUESTS_CA_BUNDLE), a CA bundle path, or False."""
    if verify is None or verify is True or verify == "":
        return True
    if verify is False:
        return False
    if isinstance(verify, str):
        if not Path(verify).expanduser().exists():
            raise CredentialsError(f"The CA bundle {verify!r} (GenerateMagics.verify) does not exist.")
        return str(Path(verify).expanduser())
    raise CredentialsError("verify must be True, False or the path of a CA bundle (PEM).")


def api_key_hosts(configured: Iterable[str] = ()) -> list[str]:
    """The hosts the person allowed the API key to go to: the setting plus ``OLLAMA_API_KEY_HOSTS``."""
    from_env = [h.strip() for h in os.environ.get("OLLAMA_API_KEY_HOSTS", "").split(",") if h.strip()]
    return [*configured, *from_env]


def _matches(host: Host, entry: str) -> bool:
    """Does ``entry`` (``name``, ``name:port`` or a URL) name ``host``?

    A bare name matches any port and scheme; ``name:port`` that port; a URL its scheme,
    name, port and path prefix.
    """
    entry = entry.strip().lower()
    if not entry:
        return False
    if "://" in entry:
        wanted = parse(entry, "api_key_hosts entry")
        return host.url.lower() == wanted.url.lower() or host.url.lower().startswith(wanted.url.lower() + "/")
    name, _, port = entry.partition(":")
    if name.startswith("[") or entry.count(":") > 1:  # an IPv6 literal: compare as a whole
        return host.hostname.lower() == entry.strip("[]")
    if host.hostname.lower() != name:
        return False
    return not port or str(host.port) == port


def api_key_allowed(host: Host, configured: Iterable[str] = ()) -> bool:
    """May ``OLLAMA_API_KEY`` go to ``host``?  Ollama's cloud over https, or a host the person named."""
    if host.scheme == "https" and host.hostname.lower() in CLOUD_HOSTS:
        return True
    return any(_matches(host, entry) for entry in api_key_hosts(configured))


def request_headers(host: Host, headers: Mapping[str, str], configured_key_hosts: Iterable[str] = ()) -> dict[str, str]:
    """The credential headers for one request to ``host``: API key < URL credentials < configured headers."""
    out: dict[str, str] = {}
    key = os.environ.get("OLLAMA_API_KEY", "").strip()
    if key and api_key_allowed(host, configured_key_hosts):
        out["Authorization"] = f"Bearer {key}"
    if host.auth is not None:
        user, password = host.auth
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        out["Authorization"] = f"Basic {token}"
    lowered = {name.lower() for name in headers}
    out = {name: value for name, value in out.items() if name.lower() not in lowered}
    out.update(headers)
    return out
