"""Conversation state: which context or messages each thread continues from.

Ollama's ``context`` (the token ids of the conversation so far) is what makes the next
``%%generate`` continue the previous one.  Ollama has deprecated it, raw mode and cloud
models return none, and token ids mean nothing to another model; so every thread also
keeps its turns as text (:class:`Turn`, linked to the turn before it), from which the
messages for ``/api/chat`` are built.  :meth:`ConversationStore.start` decides, by the
``conversation`` setting (:data:`MODES`), whether the next turn sends the context to
``/api/generate`` or the messages to ``/api/chat``, and says why in a note for the footer.
A thread keeps its newest state (the head).
Notebook cells get re-run out of order, so each cell also remembers the state it
started from the first time it ran: running it again branches from there instead of
continuing from whatever ran last.  Nothing here talks to the server or to IPython.

The store is shared by the cells (the kernel's main thread) and the ``%ollama ui`` panel
(a worker thread), and a generation takes seconds between :meth:`ConversationStore.start`
and :meth:`ConversationStore.commit`; meanwhile the thread may be reset or another answer
committed.  Every method takes one lock, and a commit checks what changed since its start:
a reset wins (the answer is not added), and a head that moved means this answer branched
(it becomes the head, and its note says so).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The ``conversation`` setting: ``auto`` sends the context while the server gives one and
#: the messages otherwise (or when the model changes); ``context`` only ever sends the
#: context; ``messages`` always continues through ``/api/chat``.
MODES = ("auto", "context", "messages")

#: Request fields kept with each turn (what shaped it), for ``%ollama save``.  Headers,
#: hosts and keys are not request fields, so they can never get into a turn.
TURN_SETTINGS = ("options", "format", "think", "keep_alive", "logprobs", "top_logprobs", "truncate", "shift")


def check_mode(mode: str) -> str:
    """The mode, or a one-line ValueError naming the choices."""
    if mode not in MODES:
        raise ValueError(f"conversation must be one of {', '.join(repr(m) for m in MODES)}, not {mode!r}")
    return mode


def same_model(a: str, b: str) -> bool:
    """Whether two names denote one model, as Ollama resolves them (no tag means ``latest``).

    >>> same_model("tiny", "tiny:latest"), same_model("library/tiny", "tiny"), same_model("a:1b", "a:3b")
    (True, False, False)
    """

    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(a) == full(b)


@dataclass(frozen=True, eq=False)
class Turn:
    """One completed exchange, as text: what was asked (with its images and system), what
    the model answered (and thought), and the settings that shaped it.

    ``previous`` links to the turn before, so a branch shares the turns it grew from and
    each new turn costs only its own text (a thread of n turns holds n turns, however
    often its cells were re-run).  ``via`` is ``"generate"`` or ``"chat"``: the endpoint
    that answered.
    """

    prompt: str
    answer: str
    model: str
    images: tuple[str, ...] = ()
    system: str | None = None
    thinking: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    prompt_tokens: int | None = None
    answer_tokens: int | None = None
    via: str = "generate"
    cell_id: str | None = None
    previous: Turn | None = field(default=None, repr=False)


def turns_of(last: Turn | None) -> list[Turn]:
    """The turns up to and including ``last``, oldest first."""
    out: list[Turn] = []
    while last is not None:
        out.append(last)
        last = last.previous
    out.reverse()
    return out


def messages_of(turns: list[Turn], system: str | None = None) -> list[dict[str, Any]]:
    """The ``/api/chat`` messages of ``turns``: the system once (``system`` if given, else the
    newest a turn used), then each turn's user message (with its images) and answer (with
    its thinking)."""
    if system is None:
        system = next((t.system for t in reversed(turns) if t.system is not None), None)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system is not None else []
    for turn in turns:
        user: dict[str, Any] = {"role": "user", "content": turn.prompt}
        if turn.images:
            user["images"] = list(turn.images)
        answer: dict[str, Any] = {"role": "assistant", "content": turn.answer}
        if turn.thinking:
            answer["thinking"] = turn.thinking
        messages += [user, answer]
    return messages


@dataclass(frozen=True)
class ThreadState:
    """An immutable point in a conversation: the model and context to continue from, and
    the newest turn (which links to the earlier ones)."""

    model: str | None = None
    context: tuple[int, ...] | None = None
    turns: int = 0
    last: Turn | None = None

    def history(self) -> list[Turn]:
        """The turns so far, oldest first."""
        return turns_of(self.last)


EMPTY = ThreadState()


@dataclass
class Thread:
    """A named conversation: its head and the starting point of each cell that ran in it.

    ``epoch`` is unique to this incarnation of the name: a reset removes the thread, and the
    next use creates one with a new epoch, so a commit that began before the reset can tell.
    """

    name: str
    head: ThreadState = EMPTY
    cell_starts: dict[str, ThreadState] = field(default_factory=dict)
    epoch: int = 0


@dataclass(frozen=True)
class Start:
    """Where a generation starts: the state, and why (a note for the footer, or None).

    ``epoch`` and ``head`` record the thread as it was at the start, for :meth:`ConversationStore.commit`.
    What to send: ``context`` (to ``/api/generate``), or ``messages`` (not None: the turn goes
    to ``/api/chat`` with these messages before its own).
    """

    state: ThreadState
    note: str | None = None
    cell_id: str | None = None
    epoch: int = -1
    head: ThreadState | None = None
    context: list[int] | None = None
    messages: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Commit:
    """What a commit did: ``added`` False when the thread was reset meanwhile; ``note`` for the footer."""

    state: ThreadState | None
    added: bool
    note: str | None = None


RESET_NOTE = "the thread was reset while this answer streamed; it was not added"


NO_CONTEXT_NOTE = "the thread continues from its messages: this server returned no context"


def continued_note(model: str, previous: str) -> str:
    return f"{model} continued {previous}'s conversation (from its messages: token ids do not carry across models)"


def route(
    state: ThreadState, model: str, mode: str
) -> tuple[ThreadState, list[int] | None, list[dict[str, Any]] | None, str | None]:
    """How a turn continues ``state`` with ``model`` under ``mode``: (the state it continues,
    context, messages or None, a note for the footer or None).

    A note is written when something changes: the first turn continued from messages
    because the server returned no context, another model continuing, or (``context``
    mode) a conversation that cannot go on and starts afresh.
    """
    switched = state.model is not None and not same_model(state.model, model)
    via_messages, note = False, None
    if mode == "messages":
        via_messages = True
        note = continued_note(model, state.model or "") if switched and state.turns else None
    elif not state.turns:
        pass  # nothing to continue (or, from an older version, a context without turns)
    elif mode == "context":
        if switched and state.context:
            state, note = EMPTY, f"new conversation: the context of {state.model} cannot continue with {model}"
        elif not state.context:
            state = EMPTY
            note = (
                "new conversation: the last answer came with no context (this server returned none) "
                "and conversation is 'context'; 'auto' would continue from the messages"
            )
    elif switched:
        via_messages, note = True, continued_note(model, state.model or "")
    elif not state.context:
        via_messages = True
        note = NO_CONTEXT_NOTE if state.last is None or state.last.via != "chat" else None
    if via_messages:
        return state, None, messages_of(state.history()), note
    return state, list(state.context) if state.context else None, None, note


def turn_from(result: Any, previous: Turn | None, cell_id: str | None) -> Turn:
    """The :class:`Turn` a completed result adds (built from the request it answered)."""
    request: Mapping[str, Any] = getattr(result, "request", None) or {}
    system = request.get("system")
    messages = request.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], Mapping):
        user = messages[-1]
        prompt, images = user.get("content", ""), user.get("images")
        first = messages[0]
        system = first.get("content") if isinstance(first, Mapping) and first.get("role") == "system" else None
        via = "chat"
    else:
        prompt, images, via = request.get("prompt", ""), request.get("images"), "generate"
    stats = getattr(result, "stats", None)
    return Turn(
        prompt=prompt if isinstance(prompt, str) else "",
        answer=result.text,
        model=result.model,
        images=tuple(i for i in images if isinstance(i, str)) if isinstance(images, list) else (),
        system=system if isinstance(system, str) else None,
        thinking=result.thinking or None,
        settings={k: request[k] for k in TURN_SETTINGS if k in request},
        prompt_tokens=getattr(stats, "prompt_eval_count", None),
        answer_tokens=getattr(stats, "eval_count", None),
        via=via,
        cell_id=cell_id,
        previous=previous,
    )


def branched_note(name: str) -> str:
    return (
        f"branched: another answer was added to thread {name} while this one streamed; "
        "the thread now continues from this one"
    )


class ConversationStore:
    """All threads of one IPython session, safe to use from the kernel and a worker thread."""

    def __init__(self) -> None:
        self._threads: dict[str, Thread] = {}
        self._calls_this_execution: dict[str, int] = {}
        self._epochs = 0
        self._lock = threading.RLock()

    @property
    def threads(self) -> dict[str, Thread]:
        """A copy of the name → thread mapping, safe to iterate while others generate."""
        with self._lock:
            return dict(self._threads)

    def thread(self, name: str) -> Thread:
        """The thread called ``name``, created empty on first use."""
        with self._lock:
            if name not in self._threads:
                self._epochs += 1
                self._threads[name] = Thread(name, epoch=self._epochs)
            return self._threads[name]

    def new_execution(self) -> None:
        """Mark the start of a cell execution (called from IPython's ``pre_run_cell``)."""
        with self._lock:
            self._calls_this_execution = {}

    def start(self, name: str, model: str, cell_id: str | None, *, fresh: bool = False, mode: str = "auto") -> Start:
        """Decide which state a generation in thread ``name`` continues from, and how.

        The first generation of a re-run cell starts where that cell first started;
        further generations in the same execution continue from the head.  Whether the
        context or the messages are sent is :func:`route`'s choice under ``mode``.  Only a
        cell (a ``cell_id``) counts as a call of the running execution: the panel, which
        passes None, cannot make a running cell miss its branch point.
        """
        with self._lock:
            thread = self.thread(name)
            calls = 0
            if cell_id is not None:
                calls = self._calls_this_execution.get(name, 0)
                self._calls_this_execution[name] = calls + 1
            if fresh:
                state, note = EMPTY, None
            elif cell_id is not None and calls == 0 and cell_id in thread.cell_starts:
                state, note = thread.cell_starts[cell_id], None
            else:
                state, note = thread.head, None
            state, context, messages, note = route(state, model, check_mode(mode))
            first = cell_id if cell_id is not None and calls == 0 else None
            return Start(state, note, first, epoch=thread.epoch, head=thread.head, context=context, messages=messages)

    def commit(self, name: str, start: Start, model: str, context: list[int] | None, *, result: Any = None) -> Commit:
        """Record a completed generation as the thread's new head, unless the thread was reset.

        Only completed generations get here, so a failed or interrupted one leaves the
        thread (and the cell's branch point) exactly as it was.  A reset since ``start``
        wins: the answer is not added (``Commit.added`` False), so a reset is never undone
        by an answer that was streaming.  If another answer became the head since
        ``start``, this one still becomes the head (it is the newest the person saw), and
        the note says it branched from an earlier point.  ``result`` (the answer) becomes
        the thread's newest :class:`Turn`.
        """
        with self._lock:
            current = self._threads.get(name)
            if current is None or current.epoch != start.epoch:
                return Commit(None, False, RESET_NOTE)
            note = None
            if start.head is not None and current.head is not start.head:
                note = branched_note(name)
            if start.cell_id is not None:
                current.cell_starts.setdefault(start.cell_id, start.state)
            last = start.state.last
            if result is not None:
                last = turn_from(result, last, start.cell_id)
            state = ThreadState(model, tuple(context) if context else None, start.state.turns + 1, last)
            current.head = state
            return Commit(state, True, note)

    def restore(self, name: str, state: ThreadState, cell_starts: Mapping[str, ThreadState]) -> None:
        """Make ``state`` the head of a new incarnation of thread ``name`` (``%ollama load``);
        an answer streaming into the old one is then not added (as after a reset)."""
        with self._lock:
            self._threads.pop(name, None)
            thread = self.thread(name)
            thread.head = state
            thread.cell_starts = dict(cell_starts)

    def reset(self, name: str | None = None) -> list[str]:
        """Forget one thread (or all); returns the names forgotten."""
        with self._lock:
            if name is None:
                names = list(self._threads)
                self._threads.clear()
                return names
            return [name] if self._threads.pop(name, None) is not None else []
