"""Showing a batch: a progress bar while it runs, a table of the first rows when done.

A batch of 2,000 answers cannot stream each one into the cell, so the cell shows one
line that is updated in place (throttled: at most one update every ``interval``
seconds): a bar, done / total, the rate, the time left, failures and cache hits so far.
At the end the bar is replaced by a table of the first rows (prompt, answer, time,
status) and the footer totals.  Answers are untrusted: in HTML they are escaped text,
never Markdown or HTML; in a terminal (and the saved text/plain) escape sequences and
control characters are removed (:mod:`ollama_magic.engine.terminal`).
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ..display.render import format_seconds, notebook_display
from ..engine.result import GenerationResult, failure_reason
from ..engine.result import outcome as status
from ..engine.terminal import one_line
from .results import BatchResults, BatchState, Progress

_FOOTER_STYLE = "opacity:0.7;font-size:0.85em;margin-top:0.4em"
_TRACK_STYLE = "flex:0 0 16em;height:0.8em;border:1px solid rgba(128,128,128,0.6);border-radius:3px;overflow:hidden"
_CELL_STYLE = "text-align:left;vertical-align:top;max-width:32em;white-space:pre-wrap;word-break:break-word"


def clip(text: str, limit: int = 160) -> str:
    """``text`` shortened to ``limit`` characters with an ellipsis.

    >>> clip("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def terminal_safe(text: str) -> str:
    r"""One line a terminal shows as text (escape sequences and controls removed, see terminal.py).

    >>> terminal_safe("ok\x1b]8;;http://x\x07 done\nnext")
    'ok done next'
    """
    return one_line(text)


def format_eta(seconds: float | None) -> str:
    """``125`` → ``2:05``; unknown → ``?``.

    >>> format_eta(125), format_eta(3725), format_eta(None)
    ('2:05', '1:02:05', '?')
    """
    if seconds is None:
        return "?"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(state: BatchState) -> str:
    """``840 / 2000 · 35.2/s · 0:33 left · 2 failed · 300 from cache``."""
    bits = [f"{state.done} / {state.total}"]
    rate = state.rate
    if rate is not None:
        bits.append(f"{rate:.1f}/s" if rate < 100 else f"{rate:,.0f}/s")
    if state.done < state.total:
        bits.append(f"{format_eta(state.remaining_seconds)} left")
    bits.append(f"{state.failed} failed")
    if state.cached:
        bits.append(f"{state.cached} from cache")
    if state.busy_retries:
        bits.append(f"server busy: {state.busy_retries} retries")
    return " · ".join(bits)


def status_text(result: GenerationResult) -> str:
    """The status column: ok, from cache, not run, or failed/invalid with the reason."""
    word = status(result)
    if word == "cached":
        return "from cache"
    if word in ("failed", "invalid"):
        return f"{word}: {failure_reason(result)}"
    return word


def footer_text(results: BatchResults, shown: int) -> str:
    """The totals under the table: the batch summary, and how many rows the table shows."""
    rows = f"first {shown} of {len(results)} rows shown" if shown < len(results) else ""
    return " · ".join(b for b in (results.summary(), rows) if b)


class BatchProgressBar:
    """The bar as a displayable (text/html and text/plain)."""

    def __init__(self, state: BatchState, note: str = "") -> None:
        self.text = progress_text(state)
        self.fraction = state.done / state.total if state.total else 1.0
        self.failed = state.failed
        self.note = note

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        width = f"{100 * self.fraction:.1f}%"
        colour = "#e53935" if self.failed else "#43a047"
        note = f'<div style="{_FOOTER_STYLE}">{html.escape(self.note)}</div>' if self.note else ""
        bar = (
            '<div class="ollama-magic-batch"><div style="display:flex;align-items:center;gap:0.6em">'
            f'<div style="{_TRACK_STYLE}"><div class="ollama-magic-bar" style="width:{width};height:100%;'
            f'background:{colour}"></div></div>'
            f'<span class="ollama-magic-progress">{html.escape(self.text)}</span></div>{note}</div>'
        )
        cells = int(self.fraction * 20)
        plain = f"[{'#' * cells}{'.' * (20 - cells)}] {self.text}" + (f"\n{self.note}" if self.note else "")
        return {"text/plain": plain, "text/html": bar}


class BatchTable:
    """The end of a batch: the first rows (prompt, answer, time, status) and the totals."""

    def __init__(self, results: BatchResults, prompts: Sequence[str], rows: int = 10) -> None:
        self.results = results
        self.prompts = prompts
        self.rows = min(rows, len(results))

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        out = []
        for i in range(self.rows):
            result = self.results[i]
            prompt = self.prompts[i] if i < len(self.prompts) else ""
            seconds = result.stats.total_seconds if result.complete else None
            shown = format_seconds(seconds) if seconds is not None else "-"
            out.append((str(i), clip(prompt), clip(result.text), shown, status_text(result)))
        return out

    def html(self) -> str:
        head = "".join(
            f'<th scope="col" style="text-align:left">{h}</th>' for h in ("#", "prompt", "answer", "time", "status")
        )
        body = []
        for row in self._rows():
            styles = ("", _CELL_STYLE, _CELL_STYLE, "white-space:nowrap", _CELL_STYLE)
            cells = "".join(
                f'<td style="text-align:left;vertical-align:top;{style}">{html.escape(cell)}</td>'
                for cell, style in zip(row, styles, strict=True)
            )
            body.append(f"<tr>{cells}</tr>")
        footer = html.escape(footer_text(self.results, self.rows))
        return (
            f'<div class="ollama-magic-batch"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
            f'<div class="ollama-magic-footer" style="{_FOOTER_STYLE}">{footer}</div></div>'
        )

    def plain(self) -> str:
        lines = []
        for index, prompt, answer, seconds, word in self._rows():
            lines.append(
                f"{index:>4}  {terminal_safe(clip(prompt, 40)):<40}  → {terminal_safe(clip(answer, 60))}"
                f"  ({seconds}, {terminal_safe(word)})"
            )
        lines.append(f"— {terminal_safe(footer_text(self.results, self.rows))}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.plain(), "text/html": self.html()}


class LiveOutput:
    """One output of a cell, shown once and then updated in place: the batch's bar that
    becomes its table, an evaluation's grid that becomes its summary."""

    def __init__(self, display: Callable[..., Any]) -> None:
        self._display = display
        self._handle: Any = None
        self.updates = 0

    def show(self, obj: Any) -> None:
        if self._handle is None:
            self._handle = self._display(obj, display_id=True)
        else:
            self._handle.update(obj)
        self.updates += 1


class NotebookProgress:
    """The bar in a display handle, updated in place; replaced by the table at the end.

    With ``rows`` 0 (the Python API) the end shows the full bar and the summary; the
    magic passes the prompts and a number of rows for the table.
    """

    def __init__(
        self,
        display: Callable[..., Any],
        *,
        interval: float = 0.25,
        prompts: Sequence[str] = (),
        rows: int = 0,
    ) -> None:
        self._live = LiveOutput(display)
        self.interval = interval
        self.prompts = prompts
        self.rows = rows
        self._next = 0.0
        self._last = ""

    @property
    def updates(self) -> int:
        """How many times the output was drawn (bounded by ``interval``, whatever the batch's pace)."""
        return self._live.updates

    def _show(self, obj: Any) -> None:
        self._live.show(obj)

    def start(self, state: BatchState) -> None:
        self._show(BatchProgressBar(state))
        self._next = time.monotonic() + self.interval

    def update(self, state: BatchState) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        bar = BatchProgressBar(state)
        if bar.text != self._last:
            self._last = bar.text
            self._show(bar)
        self._next = now + self.interval

    def finish(self, state: BatchState, results: BatchResults) -> None:
        if self.rows:
            self._show(BatchTable(results, self.prompts, self.rows))
        else:
            self._show(BatchProgressBar(state, results.summary()))


class LiveLine:
    """One line of a terminal, rewritten in place: the batch's bar, an evaluation's counts.
    Only a terminal gets it; a file or a pipe gets the summary at the end instead."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._width = 0

    @property
    def out(self) -> TextIO:
        return self._stream or sys.stderr

    def live(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def write(self, text: str) -> None:
        self.out.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.out.flush()


class TerminalProgress:
    """One text line on a terminal, rewritten in place; only the summary when not a terminal."""

    def __init__(
        self, stream: TextIO | None = None, *, interval: float = 0.5, prompts: Sequence[str] = (), rows: int = 0
    ) -> None:
        self._status = LiveLine(stream)
        self.interval = interval
        self.prompts = prompts
        self.rows = rows
        self._next = 0.0

    @property
    def out(self) -> TextIO:
        return self._status.out

    def _live(self) -> bool:
        return self._status.live()

    def _line(self, state: BatchState) -> None:
        self._status.write(str(BatchProgressBar(state)._repr_mimebundle_()["text/plain"]))

    def start(self, state: BatchState) -> None:
        if self._live():
            self._line(state)
        self._next = time.monotonic() + self.interval

    def update(self, state: BatchState) -> None:
        now = time.monotonic()
        if now >= self._next and self._live():
            self._line(state)
            self._next = now + self.interval

    def finish(self, state: BatchState, results: BatchResults) -> None:
        out = self.out
        if self._live():
            self._line(state)
            out.write("\n")
        if self.rows:
            out.write(BatchTable(results, self.prompts, self.rows).plain() + "\n")
        else:
            out.write(f"— {terminal_safe(results.summary())}\n")
        out.flush()


def default_progress() -> Progress:
    """A live HTML bar in a notebook kernel, a text line on stderr elsewhere."""
    display = notebook_display()
    return NotebookProgress(display) if display is not None else TerminalProgress(sys.stderr)
