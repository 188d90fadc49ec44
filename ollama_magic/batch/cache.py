"""A cache of finished answers in an SQLite file, so re-running a notebook costs nothing.

Every answer that finished (complete, and valid against its schema if it had one) is
stored under a hash of the whole request: the model, the prompt, every field that shapes
the answer (system, template, suffix, images, format, options, context, think, raw, the
schema settings and retries).  Fields that do not change the answer (``keep_alive``,
``stream``, the host, the timeout) are left out, so the same notebook served by another
machine still hits.  The model's digest (from ``/api/tags``) is stored beside the answer
when it is known: when the server now reports a *different* digest for that model (it
was pulled again or recreated), the stored answer is stale and is not served.  When the
server cannot be asked (offline, a Binder demo without Ollama) stored answers are served.

Failed, interrupted and schema-invalid answers are never stored: a re-run asks again.

The file uses SQLite's WAL journal and a busy timeout, so two kernels (or two processes
of any kind) can read and write the same cache at once; each thread uses its own
connection.  Only the standard library's :mod:`sqlite3` is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..engine.connection import Connection
from ..engine.errors import OllamaMagicError
from ..engine.request import encode_image
from ..engine.result import GenerationResult, Stats

#: Bump when the stored layout or the key's recipe changes: older entries then miss.
SCHEMA_VERSION = 1
#: Keyword arguments of generate() that shape the answer, hence the key.
KEY_FIELDS = (
    "model",
    "prompt",
    "suffix",
    "images",
    "format",
    "options",
    "system",
    "template",
    "raw",
    "context",
    "messages",
    "think",
    "retries",
    "schema_in_prompt",
)

_CREATE = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    digest TEXT,
    created REAL NOT NULL,
    result TEXT NOT NULL
)
"""


class CacheError(OllamaMagicError):
    """The cache file cannot be opened or used (not SQLite, no permission, disk full)."""


def _canonical(value: Any) -> Any:
    """JSON-ready form of a request field; images become the hash of their bytes."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def request_key(fields: Mapping[str, Any]) -> str:
    """The cache key of a generate() call: a SHA-256 of every field that shapes the answer.

    ``fields`` are generate()'s keyword arguments, with ``format`` already resolved to
    ``"json"`` or a schema dict.  Options with the value None are dropped, as the request
    builder drops them, so ``{"seed": None}`` and ``{}`` are one request.

    >>> a = request_key({"model": "m", "prompt": "hi", "options": {"seed": 1, "top_k": None}})
    >>> a == request_key({"model": "m", "prompt": "hi", "options": {"seed": 1}, "keep_alive": "5m"})
    True
    >>> a == request_key({"model": "m", "prompt": "hi", "options": {"seed": 2}})
    False
    """
    body: dict[str, Any] = {"v": SCHEMA_VERSION}
    for name in KEY_FIELDS:
        value = fields.get(name)
        if name == "images" and value:
            value = [hashlib.sha256(encode_image(image).encode()).hexdigest() for image in value]
        elif name == "options" and value:
            value = {k: v for k, v in value.items() if v is not None} or None
        elif name == "model" and value and ":" not in str(value).rsplit("/", 1)[-1]:
            value = f"{value}:latest"  # Ollama's own default tag: "tiny" and "tiny:latest" are one model
        elif name in ("retries", "raw") and not value:
            value = None
        if value is not None and value not in ([], {}):
            body[name] = _canonical(value)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cacheable(result: GenerationResult) -> bool:
    """Whether an answer may be stored: finished, and valid if a schema checked it."""
    return result.complete and not result.errors and not result.error and not result.cached


def _dump(result: GenerationResult) -> str:
    request = {k: v for k, v in result.request.items() if k != "images"}
    if "images" in result.request:
        request["images"] = len(result.request["images"])  # the count: the bytes are in the key
    return json.dumps(
        {
            "text": result.text,
            "model": result.model,
            "context": result.context,
            "done_reason": result.done_reason,
            "thinking": result.thinking,
            "data": result.data,
            "stats": {name: getattr(result.stats, name) for name in Stats.__dataclass_fields__},
            "request": request,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _load(text: str, created: float) -> GenerationResult:
    stored = json.loads(text)
    result = GenerationResult(
        text=stored["text"],
        model=stored["model"],
        context=stored.get("context"),
        done_reason=stored.get("done_reason"),
        thinking=stored.get("thinking"),
        data=stored.get("data"),
        stats=Stats(**stored.get("stats", {})),
        request=stored.get("request", {}),
    )
    result.cached = True
    return result


class ResultCache:
    """Finished answers in one SQLite file, shared safely between threads and processes.

    ``get``/``put`` may be called from any thread; each thread gets its own connection.
    Writes are single autocommitted statements, so a kernel killed mid-batch leaves
    every answer stored before that moment, and nothing half-written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise CacheError(f"The cache path {str(self.path)!r} is a folder: give a file name, e.g. answers.sqlite.")
        if not self.path.parent.is_dir():
            raise CacheError(
                f"The folder of the cache file {str(self.path)!r} does not exist: create it or choose another path."
            )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection()  # open (and create) now, so a bad path fails before any request

    # -- plumbing -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            self._setup(conn)
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"Cannot use {str(self.path)!r} as the answer cache ({exc}): choose another file, "
                "or delete it if it is an old cache."
            ) from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment alone with the file; another process doing the
        # same can make it fail with "locked" even with a busy timeout, so try a few times.
        for attempt in range(50):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(_CREATE)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"The answer cache {str(self.path)!r} failed: {exc}.") from None

    # -- the API --------------------------------------------------------------------

    def get(self, key: str, digest: str | None = None) -> GenerationResult | None:
        """The stored answer for ``key``, or None; a known, different model digest is a miss."""
        return self.get_many([key], {key: digest}).get(key)

    def get_many(self, keys: list[str], digests: Mapping[str, str | None] | None = None) -> dict[str, GenerationResult]:
        """Stored answers for many keys at once (one query per 500 keys)."""
        found: dict[str, GenerationResult] = {}
        digests = digests or {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._run(f"SELECT key, digest, created, result FROM answers WHERE key IN ({marks})", part)
            for key, digest, created, text in rows:
                now = digests.get(key)
                if now and digest and now != digest:
                    continue  # the model changed since: stale
                found[key] = _load(text, created)
        return found

    def put(self, key: str, result: GenerationResult, digest: str | None = None) -> bool:
        """Store a finished answer; returns False (and stores nothing) for one that is not."""
        if not cacheable(result):
            return False
        self._run(
            "INSERT OR REPLACE INTO answers (key, model, digest, created, result) VALUES (?, ?, ?, ?, ?)",
            (key, result.model, digest, time.time(), _dump(result)),
        )
        return True

    def info(self) -> dict[str, Any]:
        """What the cache holds: entries, size on disk, and entries per model."""
        rows = self._run(
            "SELECT model, COUNT(*), MIN(created), MAX(created) FROM answers GROUP BY model ORDER BY 2 DESC"
        )
        size = sum(p.stat().st_size for p in self._files() if p.exists())
        return {
            "path": str(self.path),
            "entries": sum(r[1] for r in rows),
            "bytes": size,
            "models": {r[0]: r[1] for r in rows},
            "oldest": min((r[2] for r in rows), default=None),
            "newest": max((r[3] for r in rows), default=None),
        }

    def clear(self) -> int:
        """Delete every stored answer; returns how many there were."""
        count = self._run("SELECT COUNT(*) FROM answers")[0][0]
        self._run("DELETE FROM answers")
        with contextlib.suppress(CacheError):
            self._run("PRAGMA wal_checkpoint(TRUNCATE)")
            self._run("VACUUM")
        return int(count)

    def _files(self) -> list[Path]:
        return [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]


def open_cache(cache: str | Path | ResultCache | None) -> ResultCache | None:
    """A :class:`ResultCache` for a path (or the cache itself, or None for no cache)."""
    if cache is None or cache == "":
        return None
    if isinstance(cache, ResultCache):
        return cache
    return ResultCache(cache)


def model_digests(connection: Connection, models: Iterable[str], timeout: float = 5.0) -> dict[str, str | None]:
    """The digest of each model as the server reports it now, None where unknown.

    One ``GET /api/tags``, reaching the server as the requests themselves do (same host,
    headers, TLS settings and API-key hosts: a server behind a password would otherwise
    answer 401 and the digest check would be silently lost), but never waiting for a busy
    server; a server that is down, slow or not Ollama gives no digests, so stored answers
    are served as they are (the point of a cache for offline re-runs).
    """
    wanted = list(dict.fromkeys(models))
    digests: dict[str, str | None] = dict.fromkeys(wanted)
    try:
        tags = connection.probe(timeout).tags()
    except (OllamaMagicError, OSError, ValueError):
        return digests
    by_name: dict[str, str] = {}
    for tag in tags:
        digest = tag.get("digest")
        for name in (tag.get("name"), tag.get("model")):
            if isinstance(name, str) and isinstance(digest, str):
                by_name[name] = digest
    for model in wanted:
        full = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
        digests[model] = by_name.get(model) or by_name.get(full)
    return digests


class CellCache:
    """The cache as one ``%%generate --cache PATH`` cell uses it: look up once, store once."""

    def __init__(self, store: ResultCache, key: str, digest: str | None, hit: GenerationResult | None) -> None:
        self.cache = store
        self.key = key
        self.digest = digest
        self.hit = hit

    @property
    def path(self) -> str:
        return str(self.cache.path)

    @classmethod
    def open(cls, path: str | None, fields: Mapping[str, Any], connection: Connection) -> CellCache | None:
        """Look the cell's request up (None without a cache path); a hit is in ``.hit``."""
        if not path:
            return None
        store = ResultCache(path)
        try:
            key = request_key(fields)
            model = str(fields.get("model") or "")
            digest = model_digests(connection, [model])[model]
            hit = store.get(key, digest)
        except BaseException:
            store.close()
            raise
        if hit is not None:
            store.close()
        return cls(store, key, digest, hit)

    def store(self, result: GenerationResult) -> None:
        """Keep a finished answer (a failed or invalid one is not kept) and close the file."""
        try:
            self.cache.put(self.key, result, self.digest)
        finally:
            self.cache.close()


def info_text(info: Mapping[str, Any]) -> str:
    """``%ollama cache info``: the file, its size, and the answers per model."""
    from ..server.management import human_size, table

    def when(stamp: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"

    lines = [
        f"Cache {info['path']}: {info['entries']} answer(s), {human_size(info['bytes'])} on disk",
        f"oldest {when(info['oldest'])} · newest {when(info['newest'])}",
    ]
    if info["models"]:
        lines.append(table(["model", "answers"], sorted(info["models"].items())))
    return "\n".join(lines)
