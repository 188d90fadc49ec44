"""Showing an evaluation: a progress line per contender and a grid that fills in, then the
summary table and a chart.

While :func:`~ollama_magic.evaluation.runner.evaluate` runs, the cell holds one display that is
redrawn at most every ``interval`` seconds (and only when an answer arrived), whatever the
rate: a progress line per contender (done / total, failures, tokens/s, accuracy so far) and
a grid of the first rows × contenders, each cell an answer shortened to one line; the whole
answer is its tooltip (hover) and unfolds on a click (``<details>``: no JavaScript).  At the
end the same display gets the summary table and the chart.

Answers, model names and error texts come from a server: in HTML they are escaped text,
never Markdown or markup; in a terminal escape sequences and controls are removed.  The
chart is built here from numbers and escaped labels (no script, no link, nothing to fetch):
styled ``<div>`` bars in the HTML output, which JupyterLab's sanitizer keeps in a notebook
someone else saved (it drops inline ``<svg>``), and an SVG (``image/svg+xml``) from
``Evaluation.chart()``, to show on its own or save as a file.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ..batch.results import BatchResults, BatchState
from ..batch.view import LiveLine, LiveOutput, clip
from ..display.render import notebook_display
from ..engine.result import failure_reason
from ..engine.result import outcome as status
from ..engine.terminal import one_line
from .model import EvaluationData, Tracker

_MUTED = "opacity:0.7;font-size:0.85em"
_TRACK = "flex:0 0 10em;height:0.7em;border:1px solid rgba(128,128,128,0.6);border-radius:3px;overflow:hidden"
_CELL = "text-align:left;vertical-align:top;max-width:22em;padding:0.15em 0.5em;word-break:break-word"
_RIGHT = "rgba(67,160,71,0.18)"
_WRONG = "rgba(229,57,53,0.18)"
#: One colour per contender (the chart's bars, the progress bars), repeated past eight.
PALETTE = ("#1e88e5", "#fb8c00", "#43a047", "#8e24aa", "#e53935", "#00897b", "#6d4c41", "#546e7a")
#: The longest text a cell's tooltip / unfolded answer holds.
FULL_LIMIT = 2000


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def cell_text(value: Any) -> str:
    """An answer as one line of text (a server's controls and escapes removed)."""
    return one_line("" if value is None else value).strip()


# -- the live parts -------------------------------------------------------------------------


def progress_lines(tracker: Tracker) -> list[tuple[str, float, str]]:
    """Per contender: its label, the fraction done, and ``12 / 48 · 1 failed · 35.2 tok/s · 75% right``."""
    out = []
    with tracker.lock:
        states = [
            (c.label, s.total, s.done, s.failed, s.cached, s.tokens_per_second, s.accuracy)
            for c, s in zip(tracker.contenders, tracker.states, strict=True)
        ]
    for label, total, done, failed, cached, speed, accuracy in states:
        bits = [f"{done} / {total}", f"{failed} failed"]
        if cached:
            bits.append(f"{cached} from cache")
        if speed is not None:
            bits.append(f"{speed:,.1f} tok/s")
        if tracker.expect is not None and accuracy is not None:
            bits.append(f"{accuracy:.0%} right so far" if done < total else f"{accuracy:.0%} right")
        out.append((label, done / total if total else 1.0, " · ".join(bits)))
    return out


def progress_html(tracker: Tracker) -> str:
    rows = []
    for n, (label, fraction, text) in enumerate(progress_lines(tracker)):
        colour = PALETTE[n % len(PALETTE)]
        rows.append(
            '<div class="ollama-magic-eval-progress" style="display:flex;align-items:center;gap:0.6em">'
            f'<span style="flex:0 0 12em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
            f"<b>{html.escape(cell_text(label))}</b></span>"
            f'<div style="{_TRACK}"><div style="width:{100 * fraction:.1f}%;height:100%;'
            f'background:{colour}"></div></div>'
            f"<span>{html.escape(text)}</span></div>"
        )
    return "".join(rows)


def _cell(tracker: Tracker, row: int, column: int, limit: int) -> str:
    result = tracker.results.get(tracker.item(row, column))
    if result is None:
        return f'<td class="ollama-magic-eval-pending" style="{_CELL};opacity:0.45">…</td>'
    word = status(result)
    if word not in ("ok", "cached"):
        reason = clip(cell_text(failure_reason(result) or word), FULL_LIMIT)
        return (
            f'<td class="ollama-magic-eval-failed" title="{html.escape(reason)}" '
            f'style="{_CELL};color:#e53935;background:{_WRONG}">{html.escape(word)}</td>'
        )
    from .model import answer_value

    prop = tracker.expect.property if tracker.expect is not None else None
    value = cell_text(answer_value(result, prop))  # what is scored: the answer, or its property
    full = cell_text(result.text)
    score = tracker.scores.get(tracker.item(row, column))
    background = "" if score is None else f";background:{_RIGHT if score >= 1.0 else _WRONG}"
    verdict = "" if score is None else ("right" if score >= 1.0 else "wrong")
    kind = f"ollama-magic-eval-answer {verdict}".strip()
    shown = clip(value, limit)
    tip = html.escape(clip(full, FULL_LIMIT))  # the whole answer (a property's whole object)
    if shown == full or (prop is not None and shown == value):
        body = html.escape(shown) or '<i style="opacity:0.6">(empty)</i>'
    else:  # a click unfolds the whole answer, no script needed
        body = (
            f'<details><summary style="cursor:pointer">{html.escape(shown)}</summary>'
            f'<div style="white-space:pre-wrap">{tip}</div></details>'
        )
    return f'<td class="{kind}" title="{tip}" style="{_CELL}{background}">{body}</td>'


def grid_html(tracker: Tracker, rows: int, limit: int = 60) -> str:
    """The first ``rows`` rows × contenders; the expected value beside them when there is one."""
    shown = min(rows, len(tracker.rows))
    if shown <= 0:
        return ""
    expected = tracker.expected
    head = ['<th style="text-align:left">row</th>']
    if expected is not None:
        head.append('<th style="text-align:left">expected</th>')
    head += [f'<th style="text-align:left">{html.escape(cell_text(c.label))}</th>' for c in tracker.contenders]
    body = []
    with tracker.lock:
        for row in range(shown):
            cells = [f'<td style="{_CELL}">{html.escape(cell_text(tracker.rows[row].get("index", row)))}</td>']
            if expected is not None:
                cells.append(f'<td style="{_CELL}">{html.escape(clip(cell_text(expected[row]), limit))}</td>')
            cells += [_cell(tracker, row, column, limit) for column in range(len(tracker.contenders))]
            body.append(f"<tr>{''.join(cells)}</tr>")
    more = len(tracker.rows) - shown
    note = f'<div style="{_MUTED}">first {shown} of {len(tracker.rows)} rows shown</div>' if more else ""
    return (
        f'<table class="ollama-magic-eval-grid"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{note}"
    )


class LiveGrid:
    """The live display as a displayable (the progress lines and the grid)."""

    def __init__(self, tracker: Tracker, rows: int, note: str = "") -> None:
        self.tracker = tracker
        self.rows = rows
        self.note = note

    def plain(self) -> str:
        lines = [f"{cell_text(label)}: {text}" for label, _, text in progress_lines(self.tracker)]
        return "\n".join(lines + ([self.note] if self.note else []))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        note = f'<div style="{_MUTED}">{html.escape(self.note)}</div>' if self.note else ""
        body = (
            f'<div class="ollama-magic-eval">{progress_html(self.tracker)}'
            f'<div style="margin-top:0.5em">{grid_html(self.tracker, self.rows)}</div>{note}</div>'
        )
        return {"text/plain": self.plain(), "text/html": body}


# -- the end --------------------------------------------------------------------------------


_SUMMARY_COLUMNS = (
    ("answered", "answered", str),
    ("failed", "failed", str),
    ("accuracy", "accuracy", _percent),
    ("agreement", "agreement", _percent),
    ("median_s", "median s/row", _number),
    ("p95_s", "p95 s/row", _number),
    ("tokens_per_s", "tokens/s", lambda v: _number(v, 1)),
    ("tokens", "tokens", lambda v: f"{v:,}"),
)


def summary_table(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    """The summary as header and text rows (the HTML table and the terminal's share it)."""
    rows = evaluation.summary_rows()
    keep = [c for c in _SUMMARY_COLUMNS if c[0] != "accuracy" or evaluation.expect is not None]
    if len(evaluation.contenders) < 2:
        keep = [c for c in keep if c[0] != "agreement"]
    header = ["model"] + [title for _, title, _ in keep]
    body = [
        [cell_text(c.label)] + [fmt(row[key]) for key, _, fmt in keep]
        for c, row in zip(evaluation.contenders, rows, strict=True)
    ]
    return header, body


def summary_html(evaluation: Evaluation) -> str:
    header, body = summary_table(evaluation)
    head = "".join(
        f'<th style="text-align:{"left" if i == 0 else "right"}">{html.escape(h)}</th>' for i, h in enumerate(header)
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td style="text-align:{"left" if i == 0 else "right"};padding:0.1em 0.6em">{html.escape(v)}</td>'
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in body
    )
    return f'<table class="ollama-magic-eval-summary"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def summary_plain(evaluation: Evaluation) -> str:
    header, body = summary_table(evaluation)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *body]
    ]
    return "\n".join(lines)


def _footer(evaluation: Evaluation) -> str:
    bits = [
        f"{len(evaluation.rows)} rows × {len(evaluation.contenders)} = "
        f"{len(evaluation.rows) * len(evaluation.contenders)} answers"
    ]
    if evaluation.expect is not None:
        bits.append(f"expected: {evaluation.expect.describe()}")
    agreement = evaluation.agreement() if len(evaluation.contenders) > 1 else None
    if agreement is not None:
        bits.append(f"all agree on {agreement:.0%} of rows")
    bits.append(f"{evaluation.seconds:.1f} s")
    if evaluation.interrupted:
        bits.append("interrupted: the rows that finished are scored")
    return " · ".join(bits)


class EvaluationDisplay:
    """The end of an evaluation: progress lines, the grid, the summary table and the chart."""

    def __init__(self, evaluation: Evaluation, rows: int = 8) -> None:
        self.evaluation = evaluation
        self.rows = rows

    def plain(self) -> str:
        return f"{summary_plain(self.evaluation)}\n— {cell_text(_footer(self.evaluation))}"

    def html(self) -> str:
        evaluation = self.evaluation
        tracker = evaluation._tracker
        chart = evaluation.chart()
        return (
            f'<div class="ollama-magic-eval">{progress_html(tracker)}'
            f'<div style="margin-top:0.5em">{grid_html(tracker, self.rows)}</div>'
            f'<div style="margin-top:0.6em;display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start">'
            f"{summary_html(evaluation)}{chart.html()}</div>"
            f'<div class="ollama-magic-footer" style="{_MUTED};margin-top:0.4em">'
            f"{html.escape(_footer(evaluation))}</div>"
            "</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.plain(), "text/html": self.html()}


class Chart:
    """Accuracy and tokens/s per contender, two bar panels in one SVG.

    Built from numbers and escaped labels only; shown as ``image/svg+xml`` (which Jupyter
    draws as an image: no script, nothing fetched), ``.svg`` is its text (to save as a
    file), ``.html()`` the same bars as styled ``<div>`` s for an HTML output.
    """

    def __init__(self, rows: Sequence[dict[str, Any]], labels: Sequence[str], *, scored: bool = True) -> None:
        self.rows = list(rows)
        self.labels = [cell_text(label) for label in labels]
        self.scored = scored

    @property
    def svg(self) -> str:
        label_w, panel_w, bar_h, gap, top = 150, 220, 16, 8, 34
        panels = [("tokens/s", "tokens_per_s")]
        if self.scored:
            panels.insert(0, ("accuracy", "accuracy"))
        width = label_w + len(panels) * (panel_w + 30) + 10
        height = top + len(self.rows) * (bar_h + gap) + 10
        esc = html.escape
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
        ]
        for n, label in enumerate(self.labels):
            y = top + n * (bar_h + gap)
            parts.append(
                f'<text x="{label_w - 8}" y="{y + bar_h - 4}" text-anchor="end" fill="#222">'
                f"{esc(clip(label, 22))}</text>"
            )
        for p, (title, key) in enumerate(panels):
            x0 = label_w + p * (panel_w + 30)
            values = [row.get(key) for row in self.rows]
            scale = 1.0 if key == "accuracy" else max([v for v in values if v] or [1.0])
            parts.append(f'<text x="{x0}" y="18" font-weight="bold" fill="#222">{esc(title)}</text>')
            parts.append(f'<line x1="{x0}" y1="{top - 6}" x2="{x0}" y2="{height - 6}" stroke="#999"/>')
            for n, value in enumerate(values):
                y = top + n * (bar_h + gap)
                colour = PALETTE[n % len(PALETTE)]
                length = 0.0 if value is None else panel_w * max(0.0, min(1.0, value / scale))
                text = "-" if value is None else (f"{value:.0%}" if key == "accuracy" else f"{value:,.1f}")
                parts.append(
                    f'<rect class="bar" x="{x0}" y="{y}" width="{length:.1f}" height="{bar_h}" fill="{colour}"/>'
                )
                inside = length > 60
                tx = x0 + length - 4 if inside else x0 + length + 4
                parts.append(
                    f'<text x="{tx:.1f}" y="{y + bar_h - 4}" text-anchor="{"end" if inside else "start"}" '
                    f'fill="{"white" if inside else "#222"}">{esc(text)}</text>'
                )
        parts.append("</svg>")
        return "".join(parts)

    def describe(self) -> str:
        """The chart in words (its accessible label)."""
        return "; ".join(
            f"{label}: "
            + ", ".join(
                bit
                for bit in (
                    f"accuracy {_percent(row.get('accuracy'))}" if self.scored else "",
                    f"{_number(row.get('tokens_per_s'), 1)} tok/s",
                )
                if bit
            )
            for label, row in zip(self.labels, self.rows, strict=True)
        )

    def html(self) -> str:
        """The same bars for an HTML output, drawn with styled ``<div>`` s: JupyterLab's sanitizer
        keeps them in a notebook someone else saved (it drops ``<svg>``, leaving its text)."""
        panels = [("tokens/s", "tokens_per_s")]
        if self.scored:
            panels.insert(0, ("accuracy", "accuracy"))
        out = []
        for title, key in panels:
            values = [row.get(key) for row in self.rows]
            scale = 1.0 if key == "accuracy" else max([v for v in values if v] or [1.0])
            bars = []
            for n, (label, value) in enumerate(zip(self.labels, values, strict=True)):
                width = 0.0 if value is None else 100 * max(0.0, min(1.0, value / scale))
                text = "-" if value is None else (f"{value:.0%}" if key == "accuracy" else f"{value:,.1f}")
                bars.append(
                    '<div style="display:flex;align-items:center;gap:0.5em;margin:0.2em 0">'
                    f'<span style="flex:0 0 9em;text-align:right;overflow:hidden;text-overflow:ellipsis;'
                    f'white-space:nowrap">{html.escape(clip(label, 22))}</span>'
                    '<div style="flex:0 0 12em;border-left:1px solid #999">'
                    f'<div class="ollama-magic-eval-bar" style="width:{width:.1f}%;height:1em;'
                    f'background:{PALETTE[n % len(PALETTE)]}"></div></div>'
                    f"<span>{html.escape(text)}</span></div>"
                )
            out.append(
                f'<div><div style="font-weight:bold;margin-left:9.5em">{html.escape(title)}</div>{"".join(bars)}</div>'
            )
        label = html.escape(self.describe())
        return (
            f'<div class="ollama-magic-eval-chart" role="img" aria-label="{label}" '
            f'style="display:flex;flex-wrap:wrap;gap:1em 2em">{"".join(out)}</div>'
        )

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"image/svg+xml": self.svg, "text/plain": f"<Chart: {len(self.rows)} bars per panel>"}


# -- the Progress implementations --------------------------------------------------------


class NotebookEvaluation:
    """The live display in a notebook: redrawn at most every ``interval`` s, and only when an
    answer arrived; replaced by :class:`EvaluationDisplay` when the evaluation ends."""

    def __init__(
        self, display: Callable[..., Any], tracker: Tracker | None = None, *, rows: int = 8, interval: float = 0.3
    ) -> None:
        self._live = LiveOutput(display)
        self.tracker = tracker
        self.rows = rows
        self.interval = interval
        self._next = 0.0
        self._seen = -1

    @property
    def updates(self) -> int:
        """How many times the grid was drawn (at most once per ``interval``, only after an answer)."""
        return self._live.updates

    def attach(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def _show(self, obj: Any) -> None:
        self._live.show(obj)

    def start(self, state: BatchState) -> None:
        assert self.tracker is not None
        self._seen = self.tracker.version
        self._show(LiveGrid(self.tracker, self.rows))
        self._next = time.monotonic() + self.interval

    def update(self, state: BatchState) -> None:
        now = time.monotonic()
        if now < self._next or self.tracker is None or self.tracker.version == self._seen:
            return
        self._seen = self.tracker.version
        self._show(LiveGrid(self.tracker, self.rows))
        self._next = now + self.interval

    def finish(self, state: BatchState, results: BatchResults) -> None:
        """The batch ended; :meth:`done` shows the scored end (it follows at once)."""

    def done(self, evaluation: Evaluation) -> None:
        self._show(EvaluationDisplay(evaluation, self.rows))


class TerminalEvaluation:
    """A terminal: one line of every contender's progress rewritten in place; the table at the end."""

    def __init__(self, stream: TextIO | None = None, tracker: Tracker | None = None, *, interval: float = 0.5) -> None:
        self._status = LiveLine(stream)
        self.tracker = tracker
        self.interval = interval
        self._next = 0.0

    def attach(self, tracker: Tracker) -> None:
        self.tracker = tracker

    @property
    def out(self) -> TextIO:
        return self._status.out

    def _live(self) -> bool:
        return self._status.live()

    def _line(self) -> None:
        assert self.tracker is not None
        self._status.write(
            " | ".join(f"{cell_text(label)} {t.split(' · ')[0]}" for label, _, t in progress_lines(self.tracker))
        )

    def start(self, state: BatchState) -> None:
        if self._live():
            self._line()
        self._next = time.monotonic() + self.interval

    def update(self, state: BatchState) -> None:
        now = time.monotonic()
        if now >= self._next and self._live():
            self._line()
            self._next = now + self.interval

    def finish(self, state: BatchState, results: BatchResults) -> None:
        if self._live():
            self._line()
            self.out.write("\n")

    def done(self, evaluation: Evaluation) -> None:
        self.out.write(EvaluationDisplay(evaluation).plain() + "\n")
        self.out.flush()


def default_view(tracker: Tracker, rows: int = 8) -> NotebookEvaluation | TerminalEvaluation:
    """The live grid in a notebook kernel, a text line on stderr elsewhere."""
    display = notebook_display()
    if display is not None:
        return NotebookEvaluation(display, tracker, rows=rows)
    return TerminalEvaluation(sys.stderr, tracker)


class Evaluation(EvaluationData):
    """An evaluation's answers and figures; what ``-o OUT`` holds and :func:`evaluate` returns.

    ``summary_rows()`` / ``.summary``: one row per contender (answered, failed, accuracy,
    agreement, median and p95 seconds per row, tokens/s, total tokens); ``.results``:
    one row per answer; ``disagreements()``, ``mistakes(model)``; ``chart()``.
    Accuracy counts a failed answer as wrong (rows that did not run are left out);
    agreement is the share of rows, among those both answered, where a contender gave
    the same answer as each other one (the mean over the others).  Shown in a notebook,
    it is the summary table, the chart and the grid of the first rows.
    """

    def chart(self) -> Any:
        """Accuracy and tokens/s per contender as an SVG (shown inline; ``.svg`` is its text)."""
        return Chart(self.summary_rows(), [c.label for c in self.contenders], scored=self.expect is not None)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return EvaluationDisplay(self)._repr_mimebundle_()
