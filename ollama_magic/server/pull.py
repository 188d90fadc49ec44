"""``%ollama pull``: download a model onto the server, with a progress display a person can read.

Ollama streams progress objects while it pulls: ``{"status": "pulling manifest"}``, then for
each layer ``{"status": "pulling <digest>", "digest": ..., "total": N, "completed": M}``,
then ``verifying sha256 digest``, ``writing manifest``, ``success``.  :class:`PullState`
turns them into what is shown (the layer, MB done of total, rate, time left, the final
status); :class:`NotebookPullView` shows it as an ipywidgets progress bar and
:class:`TerminalPullView` as one updating text line.  ipywidgets is already a dependency
(the panel), so no new one (tqdm) is needed for the bar.

Two failures get their own one-line messages: a server that cannot reach the registry
(offline; Go's ``dial tcp ...`` error is not for people) and Ctrl-C, which closes the
connection (Ollama then stops the download; the layers it finished are kept, so the next
pull resumes) and ends the cell with one line instead of a KeyboardInterrupt traceback.
A model the server already has is no failure when the registry cannot be reached or has
no such model (one made locally): one calm line says so, so a notebook's pull cell shows
something true wherever it runs.
"""

from __future__ import annotations

import html
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from ..engine.client import OllamaClient
from ..engine.connection import Connection
from ..engine.errors import OllamaConnectionError, OllamaMagicError, OllamaResponseError
from ..engine.terminal import one_line as printable

MB = 1_000_000
#: Seconds of history the rate is measured over (smooths bursts, follows changes).
RATE_WINDOW = 5.0

#: Words in Ollama's pull error that mean the server could not reach the registry at all.
_UNREACHABLE = (
    "dial tcp",
    "no such host",
    "connection refused",
    "network is unreachable",
    "i/o timeout",
    "tls handshake timeout",
    "connection reset",
    "no route to host",
    "temporary failure in name resolution",
)


class PullInterrupted(OllamaMagicError):
    """The person stopped a pull (Ctrl-C); the layers already downloaded stay on the server."""


class RegistryUnreachableError(OllamaConnectionError):
    """The Ollama server cannot reach the model registry (no internet access, a firewall)."""


class PullError(OllamaResponseError):
    """The registry answered, but the pull failed (an unknown model, a registry without TLS...)."""


def _mb(n: float) -> str:
    return f"{n / MB:,.1f}"


def _size(n: float) -> str:
    """
    >>> _size(512), _size(12_300), _size(40_480_224)
    ('512 B', '12 KB', '40.5 MB')
    """
    if n < 1000:
        return f"{n:.0f} B"
    if n < MB:
        return f"{n / 1000:.0f} KB"
    return f"{n / MB:,.1f} MB"


def _duration(seconds: float) -> str:
    """
    >>> _duration(5.2), _duration(75), _duration(3725)
    ('5 s', '1 min 15 s', '1 h 2 min')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


@dataclass
class PullState:
    """What the display shows, updated from each of Ollama's progress objects."""

    model: str
    status: str = "starting"
    layer: str = ""
    layer_number: int = 0
    layers: list[str] = field(default_factory=list)
    completed: int = 0
    total: int = 0
    done: bool = False
    #: How the pull ended when it did not succeed: ``failed``, ``interrupted`` or
    #: ``present`` (the registry could not say, but the server has the model already).
    outcome: str = ""
    clock: Callable[[], float] = time.monotonic
    _history: deque[tuple[float, int]] = field(default_factory=deque)
    _bytes: dict[str, int] = field(default_factory=dict)

    def update(self, progress: dict[str, Any]) -> None:
        """Take one progress object from ``/api/pull``."""
        self.status = printable(progress.get("status") or self.status)
        digest = progress.get("digest")
        if not (isinstance(digest, str) and digest) and progress.get("total"):
            digest = self.status.removeprefix("pulling ")  # an older server: the status names the layer
        if isinstance(digest, str) and digest:
            if digest not in self.layers:
                self.layers.append(digest)
            self.layer = digest.removeprefix("sha256:")[:12]
            self.layer_number = self.layers.index(digest) + 1
            total, completed = progress.get("total"), progress.get("completed")
            self.total = total if isinstance(total, int) and total > 0 else 0
            self.completed = completed if isinstance(completed, int) and completed >= 0 else 0
            self._bytes[digest] = self.completed
        elif self.status in ("success",):
            self.done = True
        now = self.clock()
        self._history.append((now, sum(self._bytes.values())))
        while len(self._history) > 2 and now - self._history[0][0] > RATE_WINDOW:
            self._history.popleft()

    @property
    def downloading(self) -> bool:
        return bool(self.total) and self.status.startswith("pulling ") and not self.done

    @property
    def fraction(self) -> float:
        return min(1.0, self.completed / self.total) if self.total else (1.0 if self.done else 0.0)

    @property
    def rate(self) -> float | None:
        """Bytes per second over the last few seconds, or None before it can be measured."""
        if len(self._history) < 2:
            return None
        (t0, b0), (t1, b1) = self._history[0], self._history[-1]
        return (b1 - b0) / (t1 - t0) if t1 - t0 >= 0.2 and b1 > b0 else None

    @property
    def seconds_left(self) -> float | None:
        rate = self.rate
        return (self.total - self.completed) / rate if rate and self.total else None

    @property
    def finishing(self) -> bool:
        """The current layer is all there (Ollama still checks it): no rate or time left to show."""
        return bool(self.total) and self.completed >= self.total

    def layer_text(self) -> str:
        """``layer 2 of 4 · 6a0746a1ec1a`` (the count grows as Ollama announces layers)."""
        return f"layer {self.layer_number} of {len(self.layers)} · {self.layer}" if self.layer else ""

    def numbers_text(self) -> str:
        """``12.3 / 397.8 MB · 8.1 MB/s · 47 s left``."""
        if not self.total:
            return ""
        if self.total >= MB:
            bits = [f"{_mb(self.completed)} / {_mb(self.total)} MB"]
        else:
            bits = [f"{_size(self.completed)} / {_size(self.total)}"]
        if self.rate and not self.finishing:
            bits.append(f"{self.rate / MB:,.1f} MB/s")
        if self.seconds_left is not None and not self.finishing:
            bits.append(f"{_duration(self.seconds_left)} left")
        return " · ".join(bits)

    def line(self) -> str:
        """The whole state as one line of text (the terminal's display)."""
        if self.downloading:
            return f"{self.model}: {self.layer_text()} · {self.fraction:4.0%} · {self.numbers_text()}"
        return f"{self.model}: {self.status}"


class PullView(Protocol):
    """A progress display: ``update`` as often as progress arrives (it throttles), ``finish`` once."""

    def update(self, state: PullState) -> None: ...

    def finish(self, state: PullState, message: str | None) -> None:
        """The pull ended: ``message`` is the final line, None after a failure (the error says it;
        ``state.outcome`` says which kind of end it was)."""
        ...


class TerminalPullView:
    """On an interactive terminal, one text line rewritten in place (carriage return),
    then the final status on its own line.  Into a pipe or a log file (a Binder build's, a
    CI job's), where a carriage return would glue every update into one long line: a line
    for each step as it ends (its layer at 100%, "verifying sha256 digest"...), then the
    final status."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self._stream = stream
        self.interval = interval
        self._next = 0.0
        self._status = ""
        self._width = 0
        self._step_line = ""  # not interactive: the current step's latest line, written when it ends

    @property
    def out(self) -> TextIO:
        return self._stream or sys.stdout

    @property
    def interactive(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False

    def _write(self, text: str, end: str = "") -> None:
        pad = max(0, self._width - len(text))
        self.out.write(f"\r{text}{' ' * pad}{end}")
        self.out.flush()
        self._width = 0 if end else len(text)

    def update(self, state: PullState) -> None:
        if not self.interactive:
            if state.status != self._status and self._step_line:
                self.out.write(self._step_line + "\n")
                self.out.flush()
            self._status = state.status
            self._step_line = state.line()
            return
        now = time.monotonic()
        if now < self._next and state.status == self._status:
            return  # throttled; a new step (a new layer, "verifying"...) is shown at once
        self._next = now + self.interval
        self._status = state.status
        self._write(state.line())

    def finish(self, state: PullState, message: str | None) -> None:
        if not self.interactive:
            # The unfinished step's line is dropped: "success" is the message's to say, and
            # on a failure the error's one line says where it stopped.
            self._step_line = ""
            if message is not None:
                self.out.write(message + "\n")
            self.out.flush()
            return
        if message is not None:
            self._write(message, end="\n")
        elif self._width:
            self._write("")  # wipe the progress line: the error's one line takes its place
            self.out.write("\r")
            self.out.flush()


def _nowrap(text: str) -> str:
    """Server text as HTML that shows as text, on one line."""
    return f'<span style="white-space: nowrap">{html.escape(text)}</span>'


class NotebookPullView:
    """An ipywidgets progress bar with the layer, MB, rate and time left; the final status as text.

    The bar lives in the widget (not saved in the notebook); the final line is printed as
    an ordinary output, so the saved notebook still says how the pull ended.
    """

    def __init__(self, display: Callable[..., Any], interval: float = 0.1) -> None:
        import ipywidgets as w

        self.interval = interval
        self._next = 0.0
        self._status = ""
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(flex="1 1 12em", min_width="8em"))
        # the texts keep their width and never wrap; the bar takes what is left
        self.label = w.HTML(layout=w.Layout(flex="0 0 auto"))
        self.numbers = w.HTML(layout=w.Layout(flex="0 0 auto"))
        self.box = w.HBox([self.label, self.bar, self.numbers], layout=w.Layout(width="100%", align_items="center"))
        display(self.box)

    def update(self, state: PullState) -> None:
        now = time.monotonic()
        if now < self._next and state.status == self._status:
            return
        self._next = now + self.interval
        self._status = state.status
        self._show(state)

    def _show(self, state: PullState) -> None:
        # Everything from the server is text, never markup.
        if state.downloading:
            self.label.value = _nowrap(f"{state.model} · {state.layer_text()}")
            self.bar.value = state.fraction
            self.numbers.value = _nowrap(f"{state.fraction:.0%} · {state.numbers_text()}")
        else:
            self.label.value = _nowrap(state.model)
            self.numbers.value = _nowrap(state.status)

    def finish(self, state: PullState, message: str | None) -> None:
        self._show(state)
        if message is None:
            # Failed or interrupted: the bar turns red and says so, and where it stopped (a bar
            # left empty beside "pulling manifest" would look as if it were still working); the
            # error's one line follows.  Nothing downloaded: the whole bar is red.
            reached = state.fraction if state.total else 0.0
            self.bar.value = reached or 1.0
            self.bar.bar_style = "danger"
            word = state.outcome or "failed"
            self.numbers.value = _nowrap(f"{word} at {reached:.0%}" if reached else word)
            return
        self.bar.value = 1.0
        self.bar.bar_style = "info" if state.outcome == "present" else "success"
        self.numbers.value = _nowrap("already here" if state.outcome == "present" else "done")
        print(message)  # the saved output (the widget is not saved in the notebook)


def default_view() -> PullView:
    """A progress bar in a notebook kernel, one text line elsewhere."""
    from ..display.render import notebook_display

    display = notebook_display()
    return NotebookPullView(display) if display is not None else TerminalPullView()


def _registry_of(model: str) -> str:
    """The registry a model name points at (``host[:port]/ns/name``), else Ollama's own.

    >>> _registry_of("qwen2.5:0.5b"), _registry_of("127.0.0.1:5055/library/tiny")
    ('registry.ollama.ai', '127.0.0.1:5055')
    """
    first, _, rest = model.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "registry.ollama.ai"


def explain(error: OllamaResponseError, model: str, base_url: str) -> OllamaMagicError:
    """Ollama's pull error, rewritten for a person: what happened, and what to do."""
    text = str(error).lower()
    registry = _registry_of(model)
    if any(marker in text for marker in _UNREACHABLE):
        if registry == "registry.ollama.ai":
            return RegistryUnreachableError(
                f"The Ollama server at {base_url} cannot reach Ollama's model registry ({registry}) to pull "
                f"{model!r}: give it internet access, or pull on a machine that has and copy ~/.ollama/models over."
            )
        return RegistryUnreachableError(
            f"The Ollama server at {base_url} cannot reach the registry {registry} to pull {model!r}: "
            "check that the registry runs and that the server can reach it."
        )
    if "http response to https client" in text:
        return PullError(
            f"The registry {registry} does not speak HTTPS: pull with --insecure "
            f"(%ollama pull --insecure {model}) if you trust it.",
            error.status_code,
        )
    if "file does not exist" in text or "manifest unknown" in text or "not found" in text:
        return PullError(
            f"The registry {registry} has no model {model!r}: check the name and tag "
            "(https://ollama.com/library lists Ollama's models).",
            error.status_code,
        )
    detail = printable(str(error)).removeprefix("Ollama reported an error: ")
    return PullError(f"Pulling {model!r} failed: {detail}", error.status_code)


def _already_present(client: OllamaClient, model: str, failure: OllamaMagicError) -> str | None:
    """The calm line for a model the server has, when the registry could not be asked or has
    no such model (one made or copied locally): nothing is wrong, nothing was pulled."""
    unreachable = isinstance(failure, RegistryUnreachableError)
    if not (unreachable or "has no model" in str(failure)):
        return None
    try:
        names = {str(m.get("name", "")) for m in client.tags()}
    except OllamaMagicError:
        return None
    wanted = model if ":" in model.rpartition("/")[2] else f"{model}:latest"
    if wanted not in names and model not in names:
        return None
    if unreachable:
        return (
            f"{model} is on the server already; the registry {_registry_of(model)} cannot be reached from it, "
            "so it was not checked for a newer version."
        )
    return (
        f"{model} is on the server already; the registry {_registry_of(model)} has no model of that name "
        "(it was made or copied onto this server), so there is nothing to pull."
    )


def pull(
    model: str,
    *,
    insecure: bool = False,
    client: OllamaClient | None = None,
    view: PullView | None = None,
    progress: Iterable[dict[str, Any]] | None = None,
) -> PullState:
    """Pull ``model`` onto the server, showing progress; return the final state.

    Raises :class:`RegistryUnreachableError`, :class:`PullError` or, on Ctrl-C,
    :class:`PullInterrupted`, each with a one-line message.
    """
    client = client or Connection().client()
    view = view or default_view()
    state = PullState(model)
    stream = progress if progress is not None else client.pull(model, insecure=insecure)
    try:
        for obj in stream:
            state.update(obj)
            view.update(state)
    except KeyboardInterrupt:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # drops the connection: Ollama stops downloading
        message = (
            f"Pull of {model!r} interrupted: the layers already downloaded stay on the server; pull again to resume."
        )
        state.outcome = "interrupted"
        view.finish(state, None)
        raise PullInterrupted(message) from None
    except OllamaResponseError as exc:
        failure = explain(exc, model, client.base_url)
        kept = _already_present(client, model, failure)
        if kept is not None:
            state.outcome = "present"
            view.finish(state, kept)
            return state
        state.outcome = "failed"
        view.finish(state, None)
        raise failure from None
    except OllamaMagicError:
        state.outcome = "failed"
        view.finish(state, None)
        raise
    if not state.done:
        state.outcome = "failed"
        view.finish(state, None)
        raise PullError(f"The pull of {model!r} ended without Ollama's 'success': try it again.")
    size = _size(sum(state._bytes.values()))
    view.finish(state, f"Pulled {model}: {len(state.layers)} layers, {size}, ready to use.")
    return state
