"""What a generation gives back: the text, the context and the server's statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_NS = 1e9


def _count(value: Any) -> int | None:
    """A count or a duration from the server: a non-negative whole number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


@dataclass(frozen=True)
class Stats:
    """The counts and durations Ollama reports in its final object (durations in ns)."""

    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None

    @classmethod
    def from_response(cls, final: dict[str, Any]) -> Stats:
        """Read the statistics from Ollama's last (``done``) object.

        Only whole numbers are taken: a value of another type (``"eval_count": "5"`` from
        a broken server or proxy) or a negative one reads as unknown, never as a crash.

        >>> Stats.from_response({"eval_count": "5", "eval_duration": 2_000_000_000, "load_duration": -1})
        Stats(total_duration=None, load_duration=None, prompt_eval_count=None, prompt_eval_duration=None, \
eval_count=None, eval_duration=2000000000)
        """
        return cls(**{name: _count(final.get(name)) for name in cls.__dataclass_fields__})

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed, ``eval_count / eval_duration``, as Ollama's CLI reports it."""
        if not self.eval_count or not self.eval_duration:
            return None
        return self.eval_count / self.eval_duration * _NS

    @property
    def total_seconds(self) -> float | None:
        return None if self.total_duration is None else self.total_duration / _NS

    @property
    def load_seconds(self) -> float | None:
        return None if self.load_duration is None else self.load_duration / _NS

    def as_dict(self) -> dict[str, Any]:
        """All fields plus ``tokens_per_second``, for a table or a DataFrame row."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["tokens_per_second"] = self.tokens_per_second
        return out


@dataclass
class GenerationResult:
    """One answer from ``/api/generate`` (or ``/api/chat``, for a conversation continued from its messages).

    ``complete`` is False when the stream ended early (interrupted or broken); such a
    result is never used to continue a conversation, and ``error`` says why, in the
    one line the failure showed (``None`` for a complete answer).
    """

    text: str
    model: str
    context: list[int] | None = None
    done_reason: str | None = None
    thinking: str | None = None
    data: Any = None
    errors: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    complete: bool = True
    thread: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Why this answer is missing or incomplete, in one line (an interrupted or failed
    #: generation, a generate_many item that failed or was not run; None for an answer that arrived).
    error: str | None = None
    #: True when the answer was served from the cache (ollama_magic.batch.cache), not generated now.
    cached: bool = False
    #: How many times a busy server (HTTP 503/429) was asked again for this answer.
    busy_retries: int = 0
    request: dict[str, Any] = field(default_factory=dict, repr=False)
    #: With ``logprobs``: one ``{token, logprob, bytes, top_logprobs}`` dict per generated
    #: token, as Ollama (0.12.11+) sent them; None when the server sent none.
    logprobs: list[dict[str, Any]] | None = field(default=None, repr=False)
    #: The upstream model and host when a remote (cloud) model answered (Ollama 0.12+).
    remote_model: str | None = None
    remote_host: str | None = None
    #: The conversation up to and including this answer, as ``/api/chat`` messages
    #: (``{role, content}``, ``images``, ``thinking``): the whole thread's for a threaded turn.
    messages: list[dict[str, Any]] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        bits = [f"model={self.model!r}"]
        if self.stats.eval_count is not None:
            bits.append(f"tokens={self.stats.eval_count}")
        tps = self.stats.tokens_per_second
        if tps is not None:
            bits.append(f"{tps:.1f} tok/s")
        bits.append(f"done_reason={self.done_reason!r}")
        if self.cached:
            bits.append("from cache")
        if not self.complete:
            bits.append("incomplete")
        if self.error:
            bits.append(f"error={self.error!r}")
        if self.errors:
            bits.append(f"{len(self.errors)} schema error(s)")
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"GenerationResult({', '.join(bits)}, text={text!r})"

    def __str__(self) -> str:
        return self.text


class TextBuffer:
    """The pieces of a streamed text, kept compact.

    A list of thousands of few-character strings costs ~60 bytes per piece, over ten
    times the text for token-sized pieces; joining every ``BLOCK`` pieces keeps the
    memory near the size of the text itself.  ``str(buffer)`` is the text so far, kept
    as the one block, so asking again costs only what was added since.
    """

    BLOCK = 256
    __slots__ = ("_blocks", "_pending")

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._pending: list[str] = []

    def append(self, piece: str) -> None:
        pending = self._pending
        pending.append(piece)
        if len(pending) >= self.BLOCK:
            self._blocks.append("".join(pending))
            pending.clear()

    def __bool__(self) -> bool:
        return bool(self._blocks or self._pending)

    def __str__(self) -> str:
        if self._pending:
            self._blocks.append("".join(self._pending))
            self._pending.clear()
        if len(self._blocks) > 1:
            self._blocks[:] = ["".join(self._blocks)]
        return self._blocks[0] if self._blocks else ""


# -- one result's outcome, in words (a batch's table, summary and progress use them) -----

#: The error of a batch item that never ran because the batch was interrupted.
NOT_RUN = "not run: the batch was interrupted"


def outcome(result: GenerationResult) -> str:
    """One word for an item: ``ok``, ``cached``, ``invalid`` (fails its schema), ``failed`` or ``not run``."""
    if result.error == NOT_RUN:
        return "not run"
    if result.error or not result.complete:
        return "failed"
    if result.errors:
        return "invalid"
    return "cached" if result.cached else "ok"


def failure_reason(result: GenerationResult) -> str | None:
    """Why an item failed, in one line (None for an item that did not fail)."""
    if result.error:
        return result.error
    if result.errors:
        return "the answer does not match the schema"
    return None
