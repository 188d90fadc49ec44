"""Many prompts at once: :func:`generate_many`, on the one engine (:func:`generate`).

Each item is one call of :func:`~ollama_magic.engine.generation.generate` (the same request,
streaming, validation and schema retries as a single cell), run by ``concurrency``
worker threads so that as many requests are in flight as the server has slots.  What
this module adds is only what a batch needs:

* results in input order, whatever order the answers arrive in;
* a failed item does not stop the others: its result carries the error (``.error``,
  ``.complete`` False) and the summary counts the failures by reason;
* a progress display (done / total, rate, time left, failures) instead of the text;
* Ctrl-C stops at once: the engine's ``cancel`` shuts every open connection (which tells
  Ollama to stop generating), the finished items are kept and the others are marked "not run";
  :class:`BatchInterrupted` carries them all;
* an optional SQLite cache (:mod:`ollama_magic.batch.cache`): finished items are stored as
  they finish and served on a re-run, so an interrupted batch resumes where it stopped.
"""

from __future__ import annotations

import copy
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..engine import structured
from ..engine.client import OllamaClient
from ..engine.connection import Connection, split
from ..engine.errors import GenerationInterrupted, InvalidRequestError, OllamaMagicError
from ..engine.generation import generate
from ..engine.request import MODEL_ENV, resolve_model
from ..engine.result import NOT_RUN, GenerationResult
from ..engine.result import outcome as status
from .cache import ResultCache, cacheable, model_digests, open_cache, request_key
from .results import BatchResults, BatchState, Progress

#: generate() keywords an item (a dict) may set; the callbacks and the client are the batch's.
_ENGINE_ONLY = {"on_chunk", "on_attempt", "on_result", "on_warning", "on_retry", "client"}
ITEM_KEYS = (frozenset(inspect.signature(generate).parameters) - _ENGINE_ONLY) | {"connection"}


class BatchInterrupted(GenerationInterrupted):
    """Ctrl-C stopped a batch; ``partial`` (also ``results``) holds every item, finished or not."""

    @property
    def results(self) -> BatchResults:
        return self.partial  # type: ignore[return-value]


# -- stopping at once -------------------------------------------------------------------


class _CancelScope:
    """The batch's stop switch: one event shared by every item's ``generate(cancel=...)``.

    Setting it makes the engine shut each open connection at once, even one waiting for a
    silent server (see ``generate``'s ``cancel``), so Ollama stops generating; workers take
    no new item once it is set.
    """

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


# -- the batch --------------------------------------------------------------------------


def _items(prompts: Iterable[Any], fields: dict[str, Any], connection: Connection) -> list[dict[str, Any]]:
    """Each item as generate() keywords: the batch's fields, overridden by the item's own,
    and under ``"connection"`` the server it goes to (the batch's, or the item's own)."""
    formats: dict[int, Any] = {}

    def resolved(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value == "json"):
            return value
        key = id(value)
        if key not in formats:
            formats[key] = (value, structured.resolve_format(value))
        return formats[key][1]

    base = dict(fields)
    if base.get("format") is not None:
        base["format"] = resolved(base["format"])
    items = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            item = dict(base, prompt=prompt)
        elif isinstance(prompt, Mapping):
            unknown = set(prompt) - ITEM_KEYS
            if unknown:
                raise InvalidRequestError(
                    f"Item {index} has keys generate() does not take: {', '.join(sorted(map(str, unknown)))}."
                )
            item = {**base, **prompt}
            if "options" in prompt and base.get("options") and prompt["options"] is not None:
                item["options"] = {**base["options"], **prompt["options"]}
            if "format" in prompt:
                item["format"] = resolved(prompt["format"])
        else:
            raise InvalidRequestError(
                f"Item {index} is a {type(prompt).__name__}: give prompts as strings, or dicts of generate() keywords."
            )
        if not isinstance(item.get("prompt"), str):
            raise InvalidRequestError(f"Item {index} has no prompt (a string).")
        item["model"] = resolve_model(item.get("model"))
        if not item["model"]:
            raise InvalidRequestError(
                f"No model given: pass model='NAME' to generate_many (or a 'model' in every item), "
                f"or set the {MODEL_ENV} environment variable."
            )
        if (item.get("retries") or 0) < 0:
            raise InvalidRequestError("retries must be 0 or more.")
        own, item = split({"connection": connection, **item})  # an item's own host (or connection) wins
        item["connection"] = own
        items.append(item)
    return items


def _failure(item: dict[str, Any], exc: BaseException, partial: Any = None) -> GenerationResult:
    result = partial if isinstance(partial, GenerationResult) else GenerationResult(text="", model=item["model"])
    result.complete = False
    result.error = str(exc) if isinstance(exc, OllamaMagicError) else f"{type(exc).__name__}: {exc}"
    return result


def _not_run(item: dict[str, Any], partial: Any = None) -> GenerationResult:
    result = partial if isinstance(partial, GenerationResult) else GenerationResult(text="", model=item["model"])
    result.complete = False
    result.error = NOT_RUN
    return result


def generate_many(
    prompts: Iterable[str | Mapping[str, Any]],
    model: str | None = None,
    *,
    concurrency: int = 2,
    progress: bool | Progress | None = True,
    cache: str | ResultCache | None = None,
    busy_retries: int | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_item: Callable[[int, GenerationResult], None] | None = None,
    **fields: Any,
) -> BatchResults:
    """Generate an answer for every prompt, ``concurrency`` at a time; results in input order.

    ``prompts`` are strings, or dicts of :func:`generate` keywords for that item (which
    override the batch's ``fields``; ``options`` are merged).  ``fields`` are any other
    :func:`generate` keywords (``format``, ``retries``, ``system``, ``options``, ``host``,
    ``timeout``...), applied to every item; ``model`` defaults to ``OLLAMA_MAGIC_MODEL``.
    Match ``concurrency`` to the server's ``OLLAMA_NUM_PARALLEL`` (its slots): more only
    queues on the server.

    An item that fails keeps its error in ``.error`` (``.complete`` False) and the batch
    goes on; ``results.summary()`` says how many failed and why.  ``cache`` (a path to an
    SQLite file) serves items answered before and stores each new one as it finishes.
    Ctrl-C shuts every open request and raises :class:`BatchInterrupted`, whose
    ``results`` keep the finished items (the others are marked :data:`NOT_RUN`).
    Invalid arguments (no model, a bad schema, an unknown key in an item) raise before
    anything is sent.

    ``on_item(index, result)`` is told of every item as it finishes (answered or failed;
    the cached ones first, before anything is sent), from the worker threads: it lets a
    caller keep its own running figures (an evaluation's per-model counts) without a
    second loop.  It must be quick and must not raise; an item that did not run is not reported.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidRequestError(f"concurrency must be a whole number of 1 or more, not {concurrency!r}.")
    unknown = set(fields) - ITEM_KEYS
    if unknown:
        raise TypeError(f"generate_many() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    if model is not None:
        fields["model"] = model
    if busy_retries is not None:
        fields["busy_retries"] = busy_retries
    connection, fields = split(fields)
    items = _items(prompts, fields, connection)
    total = len(items)
    store = open_cache(cache)
    owns_store = store is not None and not isinstance(cache, ResultCache)
    if progress is True:
        from .view import default_progress  # the views depend on the batch, not the other way

        view: Progress | None = default_progress()
    else:
        view = progress or None
    state = BatchState(total)
    results: list[GenerationResult | None] = [None] * total
    scope = _CancelScope()
    keys: list[str] = []
    digests: dict[str, str | None] = {}
    seen_warnings: set[str] = set()
    lock = threading.Lock()

    def warn(message: str) -> None:
        with lock:
            if message in seen_warnings:
                return
            seen_warnings.add(message)
        if on_warning is not None:
            on_warning(message)
        else:
            import warnings

            from ..engine.generation import SchemaKeywordWarning

            warnings.warn(message, SchemaKeywordWarning, stacklevel=3)

    try:
        if store is not None:
            keys = [request_key(item) for item in items]
            digests = _digests(items)
            hits = store.get_many(keys, {k: digests.get(items[i]["model"]) for i, k in enumerate(keys)})
            used: set[str] = set()
            for i, key in enumerate(keys):
                hit = hits.get(key)
                if hit is not None:
                    results[i] = hit if key not in used else copy.deepcopy(hit)
                    used.add(key)
            state.cached = state.done = sum(1 for r in results if r is not None)
            if on_item is not None:
                for i, hit in enumerate(results):
                    if hit is not None:
                        on_item(i, hit)
        pending = deque(i for i, r in enumerate(results) if r is None)
        finished = threading.Event()
        if not pending:
            finished.set()

        def run(index: int, clients: dict[Connection, OllamaClient]) -> GenerationResult:
            item = items[index]
            kwargs = dict(item)
            where: Connection = kwargs.pop("connection")
            client = clients.get(where)
            if client is None:  # one per thread and server: its connections are reused
                client = clients[where] = where.client()

            def on_retry(retry: Any) -> None:  # a busy server (the engine waits no more once stopped)
                with lock:
                    state.busy_retries += 1

            try:
                result = generate(**kwargs, client=client, cancel=scope.cancelled, on_warning=warn, on_retry=on_retry)
            except OllamaMagicError as exc:
                if scope.cancelled.is_set():
                    return _not_run(item, getattr(exc, "partial", None))
                return _failure(item, exc, getattr(exc, "partial", None))
            except Exception as exc:  # one bad item (an unreadable image...) must not stop the batch
                if scope.cancelled.is_set():
                    return _not_run(item)
                return _failure(item, exc)
            if store is not None and cacheable(result):
                try:
                    store.put(keys[index], result, digests.get(item["model"]))
                except OllamaMagicError as exc:  # a full disk loses the caching, not the answer
                    warn(f"An answer could not be stored in the cache: {exc}")
            return result

        def worker() -> None:
            clients: dict[Any, OllamaClient] = {}
            try:
                while not scope.cancelled.is_set():
                    with lock:
                        if not pending:
                            return
                        index = pending.popleft()
                    result = run(index, clients)
                    if result.error == NOT_RUN:
                        results[index] = result
                        return
                    if on_item is not None:  # before the count: the batch ends only once all were told
                        on_item(index, result)
                    with lock:
                        results[index] = result
                        state.done += 1
                        state.ran += 1
                        if status(result) in ("failed", "invalid"):
                            state.failed += 1
                        state.tokens += result.stats.eval_count or 0
                        if state.done == total:
                            finished.set()
            finally:
                for client in clients.values():
                    client.session.close()

        workers = [
            threading.Thread(target=worker, name=f"ollama-batch-{n}", daemon=True)
            for n in range(min(concurrency, len(pending)))
        ]
        if view is not None:
            view.start(state)
        for thread in workers:
            thread.start()
        while not finished.wait(0.1):
            if view is not None:
                view.update(state)
            if not any(t.is_alive() for t in workers) and not finished.is_set():
                break  # pragma: no cover - a worker died of something unexpected
    except KeyboardInterrupt:
        scope.cancel()
        # Open connections are shut now; a worker still sleeping before a busy retry wakes
        # into a closed scope and stops by itself (the threads are daemons).
        deadline = time.monotonic() + 2.0
        for thread in locals().get("workers", []):
            thread.join(max(0.0, deadline - time.monotonic()))
        done = BatchResults(
            (r if r is not None else _not_run(items[i]) for i, r in enumerate(results)),
            seconds=state.elapsed,
            interrupted=True,
        )
        if view is not None:
            view.finish(state, done)
        if owns_store and store is not None:
            store.close()
        raise BatchInterrupted(
            f"Batch interrupted: {done.counts()['not run']} of {total} items not run; "
            "the finished ones are kept" + (" (and cached: re-run to resume)." if store is not None else "."),
            done,
        ) from None
    except BaseException:
        scope.cancel()
        if owns_store and store is not None:
            store.close()
        raise
    out = BatchResults(
        (r if r is not None else _not_run(items[i]) for i, r in enumerate(results)), seconds=state.elapsed
    )
    if view is not None:
        view.finish(state, out)
    if owns_store and store is not None:
        store.close()
    return out


def _digests(items: list[dict[str, Any]]) -> dict[str, str | None]:
    """Each model's digest on the server its items go to (one /api/tags per server)."""
    by_server: dict[Connection, set[str]] = {}
    for item in items:
        by_server.setdefault(item["connection"], set()).add(item["model"])
    digests: dict[str, str | None] = {}
    for connection, models in by_server.items():
        digests.update(model_digests(connection, sorted(models)))
    return digests
