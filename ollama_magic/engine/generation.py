"""One generation from start to finish, usable without IPython.

:func:`generate` builds the request, streams the answer through an optional callback,
validates structured output and returns a :class:`~ollama_magic.engine.result.GenerationResult`.
The ``%%generate`` magic is a thin layer over it, so Python code and the magic behave
the same.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol

from . import capabilities, features, structured
from .busy import BusyRetry, RetryCallback
from .client import OllamaClient, OpenRequest, Timeout
from .connection import Connection
from .conversation import check_mode
from .errors import GenerationInterrupted, OllamaMagicError, OllamaResponseError
from .request import ImageInput, build_chat_payload, build_generate_payload, check_timeout, resolve_model
from .result import GenerationResult, Stats, TextBuffer


class SchemaKeywordWarning(UserWarning):
    """A schema uses a keyword that Ollama does not enforce or rejects (see structured.py)."""


class Cancel(Protocol):
    """What ``cancel`` must offer; a :class:`threading.Event` does."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class _Cancelled(KeyboardInterrupt):
    """Raised inside the stream when ``cancel`` is set: handled exactly like Ctrl-C."""


class IgnoredFieldWarning(UserWarning):
    """The server ignored a field it is too old to know (see features.py)."""


#: How many alternatives per token ``logprobs=True`` asks for unless ``top_logprobs`` says.
DEFAULT_TOP_LOGPROBS = 5


#: Called with (response_delta, thinking_delta) for every streamed chunk that carries text.
ChunkCallback = Callable[[str, str], None]
#: Called when an attempt begins (1-based number, payload) and when it ends (result).
AttemptCallback = Callable[[int, dict[str, Any]], None]


def generate(
    prompt: str,
    model: str | None = None,
    *,
    suffix: str | None = None,
    images: Iterable[ImageInput] | None = None,
    format: Any = None,  # noqa: A002 - Ollama's field name
    options: Mapping[str, Any] | None = None,
    system: str | None = None,
    template: str | None = None,
    stream: bool = True,
    raw: bool = False,
    keep_alive: str | int | float | None = None,
    context: list[int] | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
    conversation: str | None = None,
    think: bool | str | None = None,
    truncate: bool | None = None,
    shift: bool | None = None,
    logprobs: bool = False,
    top_logprobs: int | None = None,
    retries: int = 0,
    schema_in_prompt: bool | None = None,
    host: str | None = None,
    timeout: Timeout = None,
    busy_retries: int | None = None,
    headers: Mapping[str, str] | None = None,
    verify: bool | str | None = None,
    api_key_hosts: Iterable[str] | None = None,
    host_option: str | None = None,
    on_chunk: ChunkCallback | None = None,
    on_attempt: AttemptCallback | None = None,
    on_result: Callable[[GenerationResult], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_retry: RetryCallback | None = None,
    client: OllamaClient | None = None,
    cancel: Cancel | None = None,
) -> GenerationResult:
    """Generate a completion with Ollama's ``/api/generate`` and return the result.

    ``messages`` (a list, even empty) continues a conversation from its messages instead:
    the request goes to ``/api/chat`` with them and ``prompt`` as the user's next message
    (``raw``, ``template`` and ``suffix`` cannot go with it), streamed, validated and retried
    exactly as ``/api/generate``'s.  ``result.messages`` is the conversation including
    this answer either way.  ``conversation`` picks between ``context`` and ``messages``
    when both are given (e.g. a previous result's): ``"auto"`` (the default) sends the
    context if there is one, else the messages; ``"context"`` only the context;
    ``"messages"`` always goes to ``/api/chat`` (with no messages: a new conversation).

    ``format`` is ``"json"``, a JSON schema (a dict, JSON text, a path to a ``.json``
    file) or a pydantic model class; the schema is checked before sending and the answer
    is validated on arrival (``result.data`` / ``result.errors``).  With ``retries`` the
    model is asked again, told what was wrong, until an answer validates.

    ``model`` defaults to the ``OLLAMA_MAGIC_MODEL`` environment variable (read now).

    ``on_chunk`` sees the text as it streams.  Schema keywords Ollama will not enforce
    are reported to ``on_warning`` (default: a :class:`SchemaKeywordWarning`), and so is a
    field the server ignored (``logprobs``, ``truncate: false`` on an old Ollama;
    default: an :class:`IgnoredFieldWarning`).  ``logprobs=True`` asks for each token's
    probability and its ``top_logprobs`` (default 5) likeliest alternatives
    (``result.logprobs``).  A
    KeyboardInterrupt closes the connection at once and raises
    :class:`GenerationInterrupted` carrying the partial result.

    A busy server (HTTP 503/429 before any text) is asked again up to ``busy_retries``
    times (default: about a minute of jittered backoff, see :mod:`ollama_magic.busy`);
    ``on_retry`` receives a :class:`~ollama_magic.busy.BusyRetry` before each wait (its
    ``message()`` is the line to show), and ``result.busy_retries`` counts them.

    ``headers`` go with every request (e.g. ``{"Authorization": "Bearer ..."}``);
    ``verify`` is True, a CA bundle path or False; ``OLLAMA_API_KEY`` goes to
    ``https://ollama.com`` and the hosts in ``api_key_hosts`` / ``OLLAMA_API_KEY_HOSTS``
    only (see :mod:`ollama_magic.engine.auth`).  None of them appears in the result or errors.
    ``host_option`` names where ``host`` came from (e.g. ``"--host"``), so an unreachable
    server's error says which setting to fix.

    ``cancel`` (e.g. a :class:`threading.Event`) lets another thread stop the generation:
    once it is set, the connection is shut within a fraction of a second even if the
    server sends nothing (a model still loading), and :class:`GenerationInterrupted` is
    raised as for Ctrl-C.
    """
    context, messages = _continue_with(context, messages, conversation)
    fmt = structured.resolve_format(format) if format is not None else None
    for warning in structured.keyword_warnings(fmt) if fmt is not None else ():
        message = f"Ollama will not enforce this part of the schema, {warning}; only the local check guards it."
        if on_warning is not None:
            on_warning(message)
        else:
            warnings.warn(message, SchemaKeywordWarning, stacklevel=2)
    if schema_in_prompt is None:
        schema_in_prompt = isinstance(fmt, dict)
    sent_prompt = structured.prompt_with_schema(prompt, fmt) if (fmt and schema_in_prompt) else prompt
    if retries < 0:
        raise ValueError("retries must be 0 or more")
    check_timeout(timeout)
    if busy_retries is not None and busy_retries < 0:
        raise ValueError("busy_retries must be 0 or more")
    retried = 0

    def count_retry(retry: BusyRetry) -> None:
        nonlocal retried
        if cancel is not None and cancel.is_set():
            raise _Cancelled  # no new wait for a busy server once stopped
        retried += 1
        if on_retry is not None:
            on_retry(retry)

    connection = Connection(
        host=host,
        timeout=timeout,
        headers=headers,
        verify=verify,
        api_key_hosts=tuple(api_key_hosts) if api_key_hosts is not None else None,
        busy_retries=busy_retries,
        host_option=host_option,
    )
    # The caller's client (a batch shares one per server) keeps its session and host, with
    # this call's settings; otherwise the connection makes one.
    client = (
        connection.client(on_retry=count_retry) if client is None else connection.adapt(client, on_retry=count_retry)
    )
    base = {
        "model": resolve_model(model),
        "suffix": suffix,
        "images": list(images) if images else None,
        "format": fmt,
        "options": options,
        "system": system,
        "template": template,
        "stream": stream,
        "raw": raw,
        "keep_alive": keep_alive,
        "context": context,
        "think": think,
        "truncate": truncate,
        "shift": shift,
        "logprobs": logprobs,
        "top_logprobs": DEFAULT_TOP_LOGPROBS if logprobs and top_logprobs is None else top_logprobs,
    }
    history = list(messages) if messages is not None else None

    def build(prompt_text: str) -> dict[str, Any]:
        if history is None:
            return build_generate_payload(prompt=prompt_text, **base)
        return build_chat_payload(messages=history, prompt=prompt_text, **base)

    payload = build(sent_prompt)
    if base["images"]:
        capabilities.check_images(client, payload["model"])
    attempt = 1
    while True:
        if on_attempt is not None:
            on_attempt(attempt, payload)
        try:
            result = _stream_one(client, payload, on_chunk, cancel)
        except OllamaMagicError as exc:
            partial = getattr(exc, "partial", None)
            if isinstance(partial, GenerationResult):
                partial.busy_retries = retried
            raise
        result.busy_retries = retried
        result.messages = _conversation(payload, result)
        if fmt is not None:
            result.data, result.errors = structured.validate_answer(result.text, fmt)
        if attempt == 1:
            _warn_ignored(client, payload, result, on_warning)
        if on_result is not None:
            on_result(result)
        if not result.errors or attempt > retries:
            return result
        attempt += 1
        retry_prompt = structured.retry_prompt(sent_prompt, result.text, result.errors)
        payload = build(retry_prompt)


def _continue_with(
    context: list[int] | None, messages: Iterable[Mapping[str, Any]] | None, conversation: str | None
) -> tuple[list[int] | None, Iterable[Mapping[str, Any]] | None]:
    """What continues the conversation under ``conversation`` (see generate): the context or the messages."""
    mode = check_mode(conversation) if conversation is not None else "auto"
    if mode == "messages":
        return None, list(messages) if messages is not None else []
    if mode == "context" or context:
        return context, None
    return None, messages


def _conversation(payload: dict[str, Any], result: GenerationResult) -> list[dict[str, Any]]:
    """The messages of the conversation up to and including this answer."""
    if "messages" in payload:
        sent = list(payload["messages"])
    else:
        sent = [{"role": "system", "content": payload["system"]}] if "system" in payload else []
        user: dict[str, Any] = {"role": "user", "content": payload["prompt"]}
        if payload.get("images"):
            user["images"] = payload["images"]
        sent.append(user)
    answer: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.thinking:
        answer["thinking"] = result.thinking
    return [*sent, answer]


def _warn_ignored(
    client: OllamaClient,
    payload: dict[str, Any],
    result: GenerationResult,
    on_warning: Callable[[str], None] | None,
) -> None:
    """Tell the person, once per generation, about each field the server ignored."""

    def server_version() -> str | None:
        try:
            return client.version()
        except OllamaMagicError:
            return None

    for note in features.ignored_field_notes(payload, result, server_version):
        if on_warning is not None:
            on_warning(note[0].upper() + note[1:])
        else:
            warnings.warn(note[0].upper() + note[1:], IgnoredFieldWarning, stacklevel=3)


def _stream_one(
    client: OllamaClient, payload: dict[str, Any], on_chunk: ChunkCallback | None, cancel: Cancel | None = None
) -> GenerationResult:
    """Run one request to completion; on failure, attach what arrived as ``exc.partial``."""
    parts = TextBuffer()
    thinking = TextBuffer()
    # Token probabilities arrive with the chunks (also with chunks of no visible text,
    # and with the final object); None unless the server sent any.
    logprobs: list[dict[str, Any]] | None = None
    remote: dict[str, Any] = {}
    final: dict[str, Any] | None = None
    model = payload["model"]
    handle = _CancelWatcher.guard(cancel) if cancel is not None else None
    try:
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        # Closed explicitly (not left to garbage collection), so an interrupt or an error
        # drops the connection at once and Ollama stops generating.
        chat = "messages" in payload
        if chat:
            stream = client.chat_stream(payload, handle)
        elif handle is not None:
            stream = client.generate_stream_closable(payload, handle)
        else:
            stream = client.generate_stream(payload)
        try:
            for obj in stream:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
                if chat:  # /api/chat sends the text in "message" (a server's odd value is no text)
                    message = obj.get("message")
                    message = message if isinstance(message, dict) else {}
                    piece, thought = message.get("content"), message.get("thinking")
                else:
                    piece = obj.get("response")
                    thought = obj.get("thinking")
                # Only text is kept: a broken server's number or list in these fields is not.
                if piece:
                    if piece.__class__ is str:
                        parts.append(piece)
                    else:
                        piece = None
                if thought:
                    if thought.__class__ is str:
                        thinking.append(thought)
                    else:
                        thought = None
                entries = obj.get("logprobs")
                if entries and isinstance(entries, list):
                    if logprobs is None:
                        logprobs = []
                    logprobs.extend(e for e in entries if isinstance(e, dict))
                if obj.get("remote_model") or obj.get("remote_host"):
                    remote = obj
                if obj.get("done"):
                    # Not passed to on_chunk: the view's finish() shows the complete answer,
                    # so a `stream: false` answer is displayed once, complete.
                    final = obj
                    break
                if on_chunk is not None and (piece or thought):
                    on_chunk(piece or "", thought or "")
        finally:
            stream.close()
        if final is None:
            # The body ended cleanly but without Ollama's final object.  Ollama 0.9.3 does
            # this when it cuts off a model that repeats one token over and over (its
            # repeat limit); a server that died would have broken the connection instead.
            raise OllamaResponseError(
                f"Ollama at {client.base_url} ended the answer without its final message: the model was "
                "probably stopped for repeating itself (try another prompt, --num-predict, or a higher temperature)."
            )
    except KeyboardInterrupt:
        raise _interrupted(
            _result(parts, thinking, model, remote, payload, complete=False, logprobs=logprobs)
        ) from None
    except OllamaMagicError as exc:
        if cancel is not None and cancel.is_set():
            # The connection ended because cancel shut it: a stop, not a failure.
            raise _interrupted(
                _result(parts, thinking, model, remote, payload, complete=False, logprobs=logprobs)
            ) from None
        if isinstance(exc, OllamaResponseError) and isinstance(payload.get("think"), str) and "unmarshal" in str(exc):
            # Ollama before 0.11 accepts only true/false for think; its own words are
            # kept at the end of the line.
            raise OllamaResponseError(
                f"This Ollama server accepts only --think without a level (it rejected {payload['think']!r}): "
                f"levels need Ollama 0.11 or newer ('max' 0.21). The server said: {exc}",
                exc.status_code,
            ) from exc
        exc.partial = _result(
            parts, thinking, model, remote, payload, complete=False, error=str(exc), logprobs=logprobs
        )  # type: ignore[attr-defined]
        raise
    finally:
        if handle is not None:
            _CancelWatcher.release(cancel, handle)  # type: ignore[arg-type]
    return _result(parts, thinking, model, {**remote, **final}, payload, complete=True, logprobs=logprobs)


def _interrupted(partial: GenerationResult) -> GenerationInterrupted:
    """The exception for Ctrl-C or a cancel, carrying the partial result (which says why, too)."""
    message = (
        "Interrupted: the answer so far is kept; the conversation is unchanged."
        if partial.text or partial.thinking
        else "Interrupted before the answer began; the conversation is unchanged."
    )
    interrupted = GenerationInterrupted(message, partial)
    partial.error = str(interrupted)
    return interrupted


class _CancelWatcher:
    """Watches one ``cancel`` from a small thread and shuts every connection it guards the
    moment it is set.

    The thread that reads a stream may be blocked in a read for as long as the server is
    silent; only shutting the socket from outside wakes it.  Closing is repeated while the
    cancel stays set, in case a connection was still being made at the first try.

    One watcher (and one thread) serves every generation that shares a ``cancel``, as a
    batch's items or a comparison's models do: a thread started per answer would cost
    more than the rest of a short answer's handling.  The thread lingers a moment after its
    last generation, so one-after-another generations reuse it, then ends.
    """

    POLL = 0.05
    LINGER = 1.0
    _registry: ClassVar[dict[int, _CancelWatcher]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel  # held, so its id cannot be reused while this watcher is registered
        self._handles: set[OpenRequest] = set()
        self._thread = threading.Thread(target=self._watch, name="ollama-magic-cancel", daemon=True)

    @classmethod
    def guard(cls, cancel: Cancel) -> OpenRequest:
        """A handle for one request, closed when ``cancel`` is set; give it back with :meth:`release`."""
        handle = OpenRequest()
        with cls._registry_lock:
            watcher = cls._registry.get(id(cancel))
            if watcher is None:
                watcher = cls._registry[id(cancel)] = cls(cancel)
                watcher._thread.start()
            watcher._handles.add(handle)
        return handle

    @classmethod
    def release(cls, cancel: Cancel, handle: OpenRequest) -> None:
        with cls._registry_lock:
            watcher = cls._registry.get(id(cancel))
            if watcher is not None:
                watcher._handles.discard(handle)

    def _watch(self) -> None:
        idle_since: float | None = None
        while True:
            if self.cancel.wait(self.POLL):
                with self._registry_lock:
                    handles = list(self._handles)
                for handle in handles:
                    handle.close()
                time.sleep(self.POLL)  # the cancel stays set: do not spin
            with self._registry_lock:
                if self._handles:
                    idle_since = None
                    continue
                now = time.monotonic()
                if idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.LINGER:
                    del self._registry[id(self.cancel)]
                    return


def _text(value: Any) -> str | None:
    """A server field that should be text: None unless it is a non-empty string."""
    return value if isinstance(value, str) and value else None


def _result(
    parts: TextBuffer,
    thinking: TextBuffer,
    model: str,
    final: dict[str, Any],
    payload: dict[str, Any],
    *,
    complete: bool,
    error: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> GenerationResult:
    # The final object comes from the server: values of the wrong type are not trusted
    # (a context that is not a list of token ids would be sent back with the next turn).
    answered_model = final.get("model")
    context = final.get("context") if "messages" not in payload else None  # a chat has no context
    # (set(map(type, ...)) runs in C: a long context is checked at a fraction of a loop's cost.)
    if not (isinstance(context, list) and set(map(type, context)) <= {int}):
        context = None
    done_reason = final.get("done_reason")
    return GenerationResult(
        text=str(parts),
        model=answered_model if isinstance(answered_model, str) and answered_model else model,
        context=context,
        done_reason=done_reason if isinstance(done_reason, str) else None,
        thinking=str(thinking) if thinking else None,
        stats=Stats.from_response(final),
        complete=complete,
        error=error,
        request=payload,
        logprobs=logprobs,
        remote_model=_text(final.get("remote_model")),
        remote_host=_text(final.get("remote_host")),
    )
