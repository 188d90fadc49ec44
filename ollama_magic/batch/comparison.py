"""Several models, one prompt: the answers side by side, as they stream.

``%%generate -m A -m B`` and :func:`compare` send the same prompt to each model at once,
one thread per model, each running THE engine (:func:`ollama_magic.generate`), so every
field, the streaming, the schema checks and the errors are those of a single generation.
The threads only put what happens on a queue; the calling thread takes it from there and
does all the displaying (IPython's display is not for other threads), so the answers
appear in their columns as they arrive.

A model that fails shows its one-line error in its column while the others go on.  An
interrupt stops all of them through the engine's ``cancel``: every open connection is shut
at once (so Ollama stops generating, also for a model still loading or reading the prompt)
and what each had is kept.
"""

from __future__ import annotations

import html
import inspect
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..display.logprobs import TokenProbabilities
from ..display.render import Answer, StreamingMarkdown, format_seconds
from ..engine import structured
from ..engine.connection import split
from ..engine.errors import GenerationInterrupted, InvalidRequestError, OllamaMagicError
from ..engine.generation import generate
from ..engine.request import build_chat_payload, build_generate_payload
from ..engine.result import GenerationResult, TextBuffer

__all__ = ["ComparisonResult", "Event", "compare"]

# Columns that wrap: side by side while each can be ~22 characters wide... of an em, and
# stacked one under another in a narrow output.  Inline styles only (see render.py).
_ROW_STYLE = "display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start"
_COLUMN_STYLE = (
    "flex:1 1 22em;min-width:0;overflow-wrap:anywhere;padding-left:0.6em;border-left:3px solid rgba(128,128,128,0.45)"
)
_HEADER_STYLE = "font-weight:bold;margin-bottom:0.3em"
_SUMMARY_STYLE = "opacity:0.85;font-size:0.9em;margin-top:0.6em;font-weight:bold"

#: Seconds a cancelled generation gets to hand back its partial result before the others'
#: are shown without it (the engine shuts its connection at once; this only bounds a
#: thread that is slow to be scheduled on a busy machine).
STOP_WAIT = 3.0


@dataclass
class Event:
    """Something that happened to one model's generation, put on the queue by its thread.

    ``kind`` is ``chunk`` (``piece``/``thought``), ``attempt`` (``number``), ``warning``
    (``message``), ``done`` (``result``) or ``failed`` (``error``, ``result`` = partial).
    """

    kind: str
    model: str
    piece: str = ""
    thought: str = ""
    number: int = 0
    message: str = ""
    result: GenerationResult | None = None
    error: BaseException | None = None
    seconds: float | None = None


class ComparisonResult(dict[str, GenerationResult]):
    """Model → result, in the order the models were given.

    A model that failed or was interrupted has its partial result (``complete`` False;
    empty text when nothing had arrived) and its one-line error in ``errors``.
    ``seconds`` holds each model's wall-clock time from request to last token and
    ``first_token`` its time from request to first token (loading and reading the prompt).
    """

    def __init__(self, models: Iterable[str]) -> None:
        super().__init__()
        self.models = list(models)
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.first_token: dict[str, float] = {}
        self.interrupted = False

    def _complete(self) -> list[str]:
        return [m for m in self.models if m in self and self[m].complete and m not in self.errors]

    @property
    def fastest(self) -> str | None:
        """The model that generated the most tokens per second, among complete answers.

        Wall-clock times are not compared: models that stop after different numbers of
        tokens did different amounts of work.  None unless at least two models finished
        with the server's timings.
        """
        rates = {m: self[m].stats.tokens_per_second for m in self._complete()}
        return _winner({m: -r for m, r in rates.items() if r is not None})

    @property
    def first_to_answer(self) -> str | None:
        """The model whose first token came soonest (the same prompt, so a fair race), or None."""
        return _winner({m: self.first_token[m] for m in self._complete() if m in self.first_token})

    def describe(self, model: str) -> str:
        """What one model did, each figure named: first token, tokens and their rate, time in all."""
        result = self.get(model)
        if model in self.errors:
            interrupted = self.errors[model].startswith(("GenerationInterrupted", "KeyboardInterrupt"))
            return f"{model} {'interrupted' if interrupted else 'failed'}"
        if result is None:
            return f"{model} waiting"
        figures = []
        if model in self.first_token:
            figures.append(f"first token {format_seconds(self.first_token[model])}")
        count, tps = result.stats.eval_count, result.stats.tokens_per_second
        if count is not None:
            figures.append(f"{count} token{'s' if count != 1 else ''}" + (f" at {tps:.1f} tok/s" if tps else ""))
        if model in self.seconds:
            figures.append(f"{format_seconds(self.seconds[model])} in all")
        return f"{model}: {', '.join(figures)}" if figures else model

    def summary(self) -> str:
        """One line: the winner of each fair race (tokens/s, first token), then each model's figures."""
        bits = []
        fastest, first = self.fastest, self.first_to_answer
        if fastest is not None:
            bits.append(f"fastest generation: {fastest} ({self[fastest].stats.tokens_per_second:.1f} tok/s)")
        if first is not None:
            bits.append(f"first to answer: {first} ({format_seconds(self.first_token[first])})")
        bits.extend(self.describe(model) for model in self.models)
        return " · ".join(bits)

    def record(self, event: Event) -> None:
        """Take the timings and the outcome an event carries (its column's view does the rest)."""
        if event.kind == "chunk" and event.seconds is not None:
            self.first_token.setdefault(event.model, event.seconds)
        elif event.kind in ("done", "failed"):
            if event.result is not None:
                self[event.model] = event.result
            if event.kind == "done" and event.seconds is not None:
                self.seconds[event.model] = event.seconds
            if event.kind == "failed":
                self.errors[event.model] = one_line(event.error)

    def __repr__(self) -> str:
        return f"ComparisonResult({self.summary()})"


def _winner(scores: dict[str, float]) -> str | None:
    """The model with the lowest score, if at least two took part and it has no tie."""
    ranked = sorted(scores.items(), key=lambda item: item[1])
    if len(ranked) < 2 or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def thread_name(thread: str, model: str) -> str:
    """The conversation a model continues within a thread when models are compared.

    Each model has its own context (one model cannot continue another's), so within the
    thread ``default`` the model ``llama3.2`` continues ``default [llama3.2]``; ``%ollama
    threads`` lists them.

    >>> thread_name("default", "llama3.2")
    'default [llama3.2]'
    """
    return f"{thread} [{model}]"


def _check_models(models: Iterable[str]) -> list[str]:
    names = [str(m).strip() for m in models]
    if not names or any(not n for n in names):
        raise InvalidRequestError("compare() needs a list of model names, e.g. models=['llama3.2', 'qwen2.5'].")
    seen = set()
    for name in names:
        if name in seen:
            raise InvalidRequestError(f"Model {name!r} is given twice: each model is compared once.")
        seen.add(name)
    return names


_PAYLOAD_FIELDS = set(inspect.signature(build_generate_payload).parameters)


def _check_fields(prompt: str, model: str, fields: Mapping[str, Any], chat: bool = False) -> None:
    """Build one request body without sending it, so invalid arguments send nothing at all
    (and fail once, not once per column); ``chat``: some model continues from its messages."""
    body = {k: v for k, v in fields.items() if k in _PAYLOAD_FIELDS and k not in ("model", "prompt", "images")}
    if body.get("format") is not None:
        body["format"] = structured.resolve_format(body["format"])
    if chat:
        build_chat_payload(messages=[], model=model, prompt=prompt, **body)
    else:
        build_generate_payload(model=model, prompt=prompt, **body)


def compare(
    prompt: str,
    models: Iterable[str],
    *,
    context: Mapping[str, list[int] | None] | None = None,
    messages: Mapping[str, list[dict[str, Any]] | None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    poll: float = 0.05,
    on_tick: Callable[[], None] | None = None,
    **fields: Any,
) -> ComparisonResult:
    """Send ``prompt`` to each of ``models`` at once and return model → result, in order.

    ``fields`` are :func:`ollama_magic.generate`'s (``options``, ``format``, ``think``,
    ``logprobs``, ``host``, ``timeout``, ...), the same for every model; ``context`` maps
    a model to the context it continues from, ``messages`` to the messages it continues
    from (through ``/api/chat``; one list per model, as one context per model).
    ``on_event`` sees each :class:`Event` in the calling thread as it happens
    (``on_tick`` is called when nothing happened for
    ``poll`` seconds).  A model that fails does not stop the others: its error is in
    ``result.errors``.  KeyboardInterrupt stops every model and raises
    :class:`GenerationInterrupted` whose ``partial`` is the ComparisonResult so far.
    """
    names = _check_models(models)
    for name in ("on_chunk", "on_attempt", "on_result", "client", "model", "prompt", "cancel"):
        if name in fields:
            raise TypeError(f"compare() does not take {name!r}")
    histories = {m: v for m, v in (messages or {}).items() if v is not None}
    connection, fields = split(fields)
    _check_fields(prompt, names[0], fields, chat=bool(histories))
    contexts = dict(context or {})
    events: queue.Queue[Event] = queue.Queue()
    stop = threading.Event()

    def work(model: str) -> None:
        started = time.monotonic()

        def on_chunk(piece: str, thought: str) -> None:
            events.put(Event("chunk", model, piece=piece, thought=thought, seconds=time.monotonic() - started))

        def on_attempt(number: int, payload: dict[str, Any]) -> None:
            events.put(Event("attempt", model, number=number))

        try:
            result = generate(
                prompt,
                model,
                context=contexts.get(model),
                messages=histories.get(model),
                on_chunk=on_chunk,
                on_attempt=on_attempt,
                on_warning=lambda message: events.put(Event("warning", model, message=message)),
                cancel=stop,
                client=connection.client(),
                **fields,
            )
        except BaseException as exc:  # every failure belongs in its column, even a bug's
            events.put(
                Event(
                    "failed",
                    model,
                    error=exc,
                    result=getattr(exc, "partial", None),
                    seconds=time.monotonic() - started,
                )
            )
            return
        events.put(Event("done", model, result=result, seconds=time.monotonic() - started))

    results = ComparisonResult(names)
    threads = [threading.Thread(target=work, args=(m,), name=f"ollama-compare {m}", daemon=True) for m in names]
    pending = set(names)

    warned: set[str] = set()

    def handle(event: Event) -> None:
        if event.kind in ("done", "failed"):
            pending.discard(event.model)
        results.record(event)
        if on_event is not None:
            on_event(event)
        elif event.kind == "warning" and event.message not in warned:
            warned.add(event.message)  # the same schema note would come once per model
            warnings.warn(f"{event.model}: {event.message}", UserWarning, stacklevel=3)

    for thread in threads:
        thread.start()
    try:
        while pending:
            try:
                event = events.get(timeout=poll)
            except queue.Empty:
                if on_tick is not None:
                    on_tick()
                continue
            handle(event)
    except KeyboardInterrupt:
        stop.set()
        results.interrupted = True
        deadline = time.monotonic() + STOP_WAIT
        while pending and time.monotonic() < deadline:
            try:
                handle(events.get(timeout=0.05))
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                continue  # pressed again (or raised by on_event) while stopping: the stop is under way
        for model in list(pending):  # its thread was not scheduled in time; its connection is shut
            handle(Event("failed", model, error=GenerationInterrupted("Interrupted before the answer began.")))
        _fill(results, names)
        raise GenerationInterrupted(
            "Comparison interrupted: each model's partial answer is kept; the conversations are unchanged.",
            results,
        ) from None
    _fill(results, names)
    return results


def _fill(results: ComparisonResult, names: list[str]) -> None:
    """Put every model's result in ``results`` in the order given (placeholders for none)."""
    collected = dict(results)
    results.clear()
    for name in names:
        results[name] = collected.get(name) or GenerationResult(text="", model=name, complete=False)


# -- showing a comparison ------------------------------------------------------------------


@dataclass
class Column:
    """What one model's column shows, built up from its events."""

    model: str
    parts: TextBuffer = field(default_factory=TextBuffer)
    thoughts: TextBuffer = field(default_factory=TextBuffer)
    markdown: StreamingMarkdown = field(default_factory=StreamingMarkdown)
    thinking_markdown: StreamingMarkdown = field(default_factory=StreamingMarkdown)
    status: str = "waiting for the first token…"
    footer: str = ""
    result: GenerationResult | None = None
    notes: list[str] = field(default_factory=list)

    def answer(self, structured_output: bool) -> Answer:
        result = self.result
        if result is None:
            return Answer(
                str(self.parts),
                thinking=str(self.thoughts),
                status=self.status,
                streaming=True,
                verbatim=structured_output,
                markdown=self.markdown.render,
                thinking_markdown=self.thinking_markdown.render,
            )
        valid = structured_output and result.complete and not result.errors
        return Answer(
            result.text,
            thinking=result.thinking or "",
            status=" · ".join([*self.notes, self.status] if self.status else self.notes),
            footer=self.footer,
            errors=result.errors,
            data=result.data,
            has_data=valid,
            verbatim=structured_output,
            markdown=self.markdown.render,
            thinking_markdown=self.thinking_markdown.render,
        )


class ComparisonView:
    """The columns of a comparison, rebuilt from events; displayable in IPython.

    ``footer(model, result)`` gives a finished result's footer line (None: no footers).
    """

    def __init__(
        self,
        models: list[str],
        *,
        structured_output: bool = False,
        footer: Callable[[str, GenerationResult], str] | None = None,
    ) -> None:
        self.columns = {m: Column(m) for m in models}
        self.structured_output = structured_output
        self._footer = footer
        self.summary = ""
        self.results = ComparisonResult(models)
        #: How each answer was made (provenance.py), set once the comparison is over: the
        #: final output carries it in its metadata, as a single answer's output does.
        self.metadata: dict[str, Any] | None = None

    def apply(self, event: Event) -> None:
        """Take one event into its column."""
        column = self.columns[event.model]
        self.results.record(event)
        if event.kind == "chunk":
            column.status = ""
            if event.piece:
                column.parts.append(event.piece)
            if event.thought:
                column.thoughts.append(event.thought)
        elif event.kind == "attempt":
            column.parts, column.thoughts = TextBuffer(), TextBuffer()
            column.markdown, column.thinking_markdown = StreamingMarkdown(), StreamingMarkdown()
            column.status = f"attempt {event.number}" if event.number > 1 else column.status
        elif event.kind == "warning":
            column.notes.append(f"Note: {event.message}")
        elif event.kind == "done" and event.result is not None:
            column.result = event.result
            column.status = ""
            if event.result.errors:
                column.status = "rejected: the answer does not match the schema"
            column.footer = self._footer(event.model, event.result) if self._footer else ""
        elif event.kind == "failed":
            partial = event.result
            interrupted = isinstance(event.error, (GenerationInterrupted, KeyboardInterrupt))
            if partial is None:
                partial = GenerationResult(text=str(column.parts), model=event.model, complete=False)
                if column.thoughts:
                    partial.thinking = str(column.thoughts)
            column.result = partial
            self.results[event.model] = partial
            message = self.results.errors[event.model]
            if interrupted:
                self.results.interrupted = True
                column.status = (
                    "Interrupted: the answer so far is kept; the conversation is unchanged."
                    if partial.text or partial.thinking
                    else "Interrupted before the answer began; the conversation is unchanged."
                )
            else:
                column.status = f"Failed: {message}"
        self.summary = self.results.summary() if not self.pending() else ""

    def pending(self) -> list[str]:
        return [m for m, c in self.columns.items() if c.result is None]

    def html(self) -> str:
        columns = []
        for model, column in self.columns.items():
            body = column.answer(self.structured_output).html()
            if column.result is not None and column.result.logprobs:
                body += TokenProbabilities(column.result.logprobs, model=model).html()
            columns.append(
                f'<div class="ollama-magic-column" style="{_COLUMN_STYLE}">'
                f'<div class="ollama-magic-column-model" role="heading" aria-level="3" style="{_HEADER_STYLE}">'
                f"{html.escape(model)}</div>"
                f"{body}</div>"
            )
        summary = (
            f'<div class="ollama-magic-summary" style="{_SUMMARY_STYLE}">{html.escape(self.summary)}</div>'
            if self.summary
            else ""
        )
        return f'<div class="ollama-magic-comparison"><div style="{_ROW_STYLE}">{"".join(columns)}</div>{summary}</div>'

    def plain(self) -> str:
        blocks = [
            f"── {model} ──\n{column.answer(self.structured_output).plain().strip(chr(10))}"
            for model, column in self.columns.items()
        ]
        if self.summary:
            blocks.append(f"══ {self.summary}")
        return "\n\n".join(blocks)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        bundle = {"text/plain": self.plain(), "text/html": self.html()}
        return (bundle, {"ollama_magic": self.metadata}) if self.metadata else bundle


def one_line(error: BaseException | None) -> str:
    """An error as the one line a person reads in a column."""
    if error is None:
        return "failed"
    if isinstance(error, OllamaMagicError):
        return f"{type(error).__name__}: {error}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class LiveComparison:
    """Shows a comparison in a notebook: one display, updated in place at most every
    ``interval`` seconds (and never more often than four times a render takes)."""

    def __init__(self, view: ComparisonView, display: Callable[..., Any], interval: float = 0.05) -> None:
        self.view = view
        self._display = display
        self.interval = interval
        self._handle: Any = None
        self._next = 0.0
        self._dirty = False
        self.updates = 0

    def on_event(self, event: Event) -> None:
        self.view.apply(event)
        self._dirty = True
        if event.kind in ("done", "failed", "attempt") or time.monotonic() >= self._next:
            self.show()

    def on_tick(self) -> None:
        if self._dirty:
            self.show()

    def show(self) -> None:
        start = time.monotonic()
        if self._handle is None:
            self._handle = self._display(self.view, display_id=True)
        else:
            self._handle.update(self.view)
        self.updates += 1
        self._dirty = False
        spent = time.monotonic() - start
        self._next = start + max(self.interval, 4 * spent)


class TerminalComparison:
    """Shows a comparison in a terminal: each model's answer, stacked, as it completes."""

    def __init__(self, view: ComparisonView, stream: TextIO | None = None) -> None:
        self.view = view
        self._stream = stream

    def on_event(self, event: Event) -> None:
        import sys

        self.view.apply(event)
        if event.kind in ("done", "failed"):
            out = self._stream or sys.stdout
            answer = self.view.columns[event.model].answer(self.view.structured_output)
            out.write(f"── {event.model} ──\n{answer.plain().strip(chr(10))}\n\n")
            if not self.view.pending():
                out.write(f"══ {self.view.summary}\n")
            out.flush()

    def on_tick(self) -> None:
        pass
