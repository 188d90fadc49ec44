"""Conversation state: which context each thread continues from.

Ollama's ``context`` (the token ids of the conversation so far) is what makes the next
``%%generate`` continue the previous one.  A thread keeps its newest state (the head).
Notebook cells get re-run out of order, so each cell also remembers the state it
started from the first time it ran: running it again branches from there instead of
continuing from whatever ran last.  Nothing here talks to the server or to IPython.
"""

from __future__ import annotations

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
    """A named conversation: its head and the starting point of each cell that ran in it."""

    name: str
    head: ThreadState = EMPTY
    cell_starts: dict[str, ThreadState] = field(default_factory=dict)


@dataclass(frozen=True)
class Start:
    """Where a generation starts: the state, and why (a note for the footer, or None)."""

    state: ThreadState
    note: str | None = None
    cell_id: str | None = None


class ConversationStore:
    """All threads of one IPython session."""

    def __init__(self) -> None:
        self.threads: dict[str, Thread] = {}
        self._calls_this_execution: dict[str, int] = {}

    def thread(self, name: str) -> Thread:
        """The thread called ``name``, created empty on first use."""
        if name not in self.threads:
            self.threads[name] = Thread(name)
        return self.threads[name]

    def new_execution(self) -> None:
        """Mark the start of a cell execution (called from IPython's ``pre_run_cell``)."""
        self._calls_this_execution = {}

    def start(self, name: str, model: str, cell_id: str | None, *, fresh: bool = False) -> Start:
        """Decide which state a generation in thread ``name`` continues from.

        The first generation of a re-run cell starts where that cell first started;
        further generations in the same execution continue from the head.  A different
        model cannot continue another model's context, so it starts afresh.
        """
        thread = self.thread(name)
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
        return Start(state, note, cell_id if calls == 0 else None)

    def commit(self, name: str, start: Start, model: str, context: list[int] | None) -> ThreadState:
        """Record a completed generation as the thread's new head.

        Only completed generations get here, so a failed or interrupted one leaves the
        thread (and the cell's branch point) exactly as it was.
        """
        thread = self.thread(name)
        if start.cell_id is not None:
            thread.cell_starts.setdefault(start.cell_id, start.state)
        state = ThreadState(model, tuple(context) if context else None, start.state.turns + 1)
        thread.head = state
        return state

    def reset(self, name: str | None = None) -> list[str]:
        """Forget one thread (or all); returns the names forgotten."""
        if name is None:
            names = list(self.threads)
            self.threads.clear()
            return names
        return [name] if self.threads.pop(name, None) is not None else []
