"""Which server, and how to reach it: one value, and the one place that builds a client.

Six settings say how a request reaches Ollama: the host, the timeout, the headers, the TLS
``verify`` setting, the hosts that may receive ``OLLAMA_API_KEY`` and how often a busy
server is asked again.  They come from ``%config GenerateMagics.*``, from the panel's
arguments, from :func:`~ollama_magic.generate`'s keywords or from the environment
(``OLLAMA_HOST`` and friends, read by the client at each request).  They used to travel as
loose keywords through every layer, and four layers built their own client from them, each
with its own idea of which settings mattered (a cache probe that forgot the headers is
answered 401 by a server behind a password).  Now every frontend builds a
:class:`Connection` once and passes it down; :meth:`Connection.client` is the only place
in the package where an :class:`~ollama_magic.engine.client.OllamaClient` is made.

A connection holds secrets (headers, passwords in the host URL); its ``repr`` shows the
host as it may be shown and never the headers.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import auth
from .busy import RetryCallback
from .client import OllamaClient, Timeout
from .host import resolve

#: The keywords of generate(), compare(), generate_many() and the panel that make up a connection.
FIELDS = ("host", "timeout", "headers", "verify", "api_key_hosts", "busy_retries", "host_option")


@dataclass(frozen=True, repr=False)
class Connection:
    """Which Ollama server and how to reach it.  None means "the default" for every field:
    ``OLLAMA_HOST`` (read at each request), no timeout, no extra headers, requests' own TLS
    checks, ``OLLAMA_API_KEY_HOSTS``, about a minute of busy retries.

    ``host_option`` names where the host came from (``"--host"``,
    ``"%config GenerateMagics.host"``), so a server that cannot be reached is reported with
    the setting to fix.
    """

    host: str | None = None
    timeout: Timeout = None
    headers: Mapping[str, str] | None = None
    verify: bool | str | None = None
    api_key_hosts: tuple[str, ...] | None = None
    busy_retries: int | None = None
    host_option: str | None = None

    def __post_init__(self) -> None:
        # Checked here, once, so a bad setting is one clear line before anything is sent.
        object.__setattr__(self, "headers", auth.check_headers(self.headers) or None)
        if self.verify is not None:
            object.__setattr__(self, "verify", auth.check_verify(self.verify))
        if self.api_key_hosts is not None:
            object.__setattr__(self, "api_key_hosts", tuple(self.api_key_hosts))
        if self.busy_retries is not None and self.busy_retries < 0:
            raise ValueError("busy_retries must be 0 or more")

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> Connection:
        """The connection named by a call's keywords (the other keywords are left alone)."""
        return cls(**{name: fields[name] for name in FIELDS if fields.get(name) is not None})

    def replace(self, **changes: Any) -> Connection:
        """This connection with some settings changed (e.g. a probe that never waits)."""
        return dataclasses.replace(self, **changes)

    def keywords(self) -> dict[str, Any]:
        """The settings that are set, as generate()'s keywords (for a public function's call)."""
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}

    def client(
        self,
        *,
        on_retry: RetryCallback | None = None,
        session: Any = None,
    ) -> OllamaClient:
        """A client that reaches the server as this connection says: the one place one is made."""
        return OllamaClient(
            self.host,
            self.timeout,
            session,
            busy_retries=self.busy_retries,
            on_retry=on_retry,
            headers=self.headers,
            verify=self.verify,
            api_key_hosts=self.api_key_hosts,
            host_option=self.host_option,
        )

    def adapt(self, client: OllamaClient, *, on_retry: RetryCallback | None = None) -> OllamaClient:
        """A copy of a caller's client (its host, timeout and pooled session) with this
        connection's credentials and retries wherever this connection sets them."""
        adapted = copy.copy(client)
        adapted.on_retry = on_retry
        if self.busy_retries is not None:
            adapted.busy_retries = self.busy_retries
        if self.headers is not None:
            adapted.headers = dict(self.headers)
        if self.verify is not None:
            adapted.verify = self.verify
        if self.api_key_hosts is not None:
            adapted.api_key_hosts = list(self.api_key_hosts)
        if self.host_option is not None:
            adapted.host_option = self.host_option
        return adapted

    def probe(self, timeout: float = 5.0) -> OllamaClient:
        """A client for a quick question on the side (tags for the cache, the server's
        version): reaches the server as a generation would, but never waits for a busy one."""
        return self.replace(timeout=timeout, busy_retries=0).client()

    def __hash__(self) -> int:  # one client per connection in a batch's threads
        headers = tuple(sorted(self.headers.items())) if self.headers else None
        return hash((self.host, repr(self.timeout), headers, self.verify, self.api_key_hosts, self.busy_retries))

    def __repr__(self) -> str:
        # Never the headers or the host's password: they are secrets.
        return f"Connection({resolve(self.host).shown!r})"


def split(fields: Mapping[str, Any]) -> tuple[Connection, dict[str, Any]]:
    """A call's keywords as (its connection, the others).

    ``fields`` may hold a ``connection`` (as the magics and the panel pass it down) and the
    loose keywords (as a user's ``compare(..., host=...)`` does); a loose keyword wins over
    the same setting of the connection.
    """
    rest = dict(fields)
    given = rest.pop("connection", None) or Connection()
    if not isinstance(given, Connection):
        raise TypeError(f"connection must be a Connection, not {type(given).__name__}")
    loose = {name: rest.pop(name) for name in FIELDS if name in rest}
    loose = {name: value for name, value in loose.items() if value is not None}
    if "api_key_hosts" in loose:
        loose["api_key_hosts"] = tuple(loose["api_key_hosts"])
    return (given.replace(**loose) if loose else given), rest


def of_client(client: OllamaClient) -> Connection:
    """The connection a client was made from (to ask the same server something else)."""
    return Connection(
        host=client.host,
        timeout=client.timeout,
        headers=client.headers or None,
        verify=client.verify,
        api_key_hosts=tuple(client.api_key_hosts) or None,
        busy_retries=client.busy_retries,
        host_option=client.host_option,
    )
