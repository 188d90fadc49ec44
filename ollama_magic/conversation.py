"""Conversation state: which context each thread continues from.

Ollama's ``context`` (the token ids of the conversation so far) is what makes the next
``%%generate`` continue the previous one.  A thread keeps its newest state (the head).
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
from dataclasses import dataclass, field


def same_model(a: str, b: str) -> bool:
    """Whether two names denote one model, as Ollama resolves them (no tag means ``latest``).

    >>> same_model("tiny", "tiny:latest"), same_model("library/tiny", "tiny"), same_model("a:1b", "a:3b")
    (True, False, False)
    """

    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(a) == full(b)


@dataclass(frozen=True)
class ThreadState:
    """An immutable point in a conversation: the model and context to continue from."""

    model: str | None = None
    context: tuple[int, ...] | None = None
    turns: int = 0


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
    """

    state: ThreadState
    note: str | None = None
    cell_id: str | None = None
    epoch: int = -1
    head: ThreadState | None = None


@dataclass(frozen=True)
class Commit:
    """What a commit did: ``added`` False when the thread was reset meanwhile; ``note`` for the footer."""

    state: ThreadState | None
    added: bool
    note: str | None = None


RESET_NOTE = "the thread was reset while this answer streamed; it was not added"


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

    def start(self, name: str, model: str, cell_id: str | None, *, fresh: bool = False) -> Start:
        """Decide which state a generation in thread ``name`` continues from.

        The first generation of a re-run cell starts where that cell first started;
        further generations in the same execution continue from the head.  A different
        model cannot continue another model's context, so it starts afresh.  Only a
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
            if state.model is not None and not same_model(state.model, model) and state.context:
                note = f"new conversation: the context of {state.model} cannot continue with {model}"
                state = EMPTY
            first = cell_id if cell_id is not None and calls == 0 else None
            return Start(state, note, first, epoch=thread.epoch, head=thread.head)

    def commit(self, name: str, start: Start, model: str, context: list[int] | None) -> Commit:
        """Record a completed generation as the thread's new head, unless the thread was reset.

        Only completed generations get here, so a failed or interrupted one leaves the
        thread (and the cell's branch point) exactly as it was.  A reset since ``start``
        wins: the answer is not added (``Commit.added`` False), so a reset is never undone
        by an answer that was streaming.  If another answer became the head since
        ``start``, this one still becomes the head (it is the newest the person saw), and
        the note says it branched from an earlier point.
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
            state = ThreadState(model, tuple(context) if context else None, start.state.turns + 1)
            current.head = state
            return Commit(state, True, note)

    def reset(self, name: str | None = None) -> list[str]:
        """Forget one thread (or all); returns the names forgotten."""
        with self._lock:
            if name is None:
                names = list(self._threads)
                self._threads.clear()
                return names
            return [name] if self._threads.pop(name, None) is not None else []
