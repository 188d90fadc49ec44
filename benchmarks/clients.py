"""The clients under test, each reading one whole answer from the bench server.

Every function takes the server's address and a prompt (which shapes the answer, see
``stream_server.py``), and returns ``(chunks, answer_chars)``; ``on_first`` is called
when the first chunk of text is in the client's hands (for time-to-first-token).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import requests

MODEL = "bench"

Reader = Callable[..., tuple[int, int]]


def bare_loop(host: str, prompt: str, on_first: Callable[[], None] | None = None) -> tuple[int, int]:
    """The floor: ``requests`` + ``iter_lines`` + ``json.loads``, keeping the text."""
    response = requests.post(
        f"http://{host}/api/generate", json={"model": MODEL, "prompt": prompt, "stream": True}, stream=True
    )
    parts: list[str] = []
    chunks = 0
    try:
        for line in response.iter_lines():
            if not line:
                continue
            obj = json.loads(line)
            if obj.get("done"):
                break
            chunks += 1
            if chunks == 1 and on_first is not None:
                on_first()
            parts.append(obj["response"])
    finally:
        response.close()
    return chunks, len("".join(parts))


def official_client(host: str) -> Reader | None:
    """The official ``ollama`` package (``Client.generate(..., stream=True)``), if installed.

    The client is made once, outside the timed part, as a program would keep it.
    """
    try:
        import ollama
    except ImportError:
        return None
    client = ollama.Client(host=f"http://{host}")

    def read(host: str, prompt: str, on_first: Callable[[], None] | None = None) -> tuple[int, int]:
        parts: list[str] = []
        chunks = 0
        for part in client.generate(model=MODEL, prompt=prompt, stream=True):
            if part.done:
                break
            chunks += 1
            if chunks == 1 and on_first is not None:
                on_first()
            parts.append(part.response)
        return chunks, len("".join(parts))

    return read


def magic_generate(host: str, prompt: str, on_first: Callable[[], None] | None = None) -> tuple[int, int]:
    """``ollama_magic.generate(prompt, model, host=...)`` (``on_chunk`` only when timing the first token)."""
    from ollama_magic import generate

    seen = [0]

    def on_chunk(piece: str, thought: str) -> None:
        if not seen[0]:
            seen[0] = 1
            on_first()  # type: ignore[misc]

    result = generate(prompt, MODEL, host=host, on_chunk=on_chunk if on_first is not None else None)
    if not result.complete:
        raise RuntimeError("generate() returned an incomplete result")
    return int(result.stats.eval_count or 0), len(result.text)


# -- the %%generate magic in a real IPython shell ------------------------------------


def _recording_publisher_class() -> type:
    from IPython.core.displaypub import DisplayPublisher

    class RecordingPublisher(DisplayPublisher):
        """A display publisher that only notes what it was asked to publish.

        It stands in for ipykernel's ZMQ publisher (which would serialise the message
        and send it): what remains is what the magic and IPython's formatters cost.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.keep_last = True
            self.reset()

        def reset(self) -> None:
            self.count = 0
            self.times: list[float] = []
            self.html_chars = 0
            self.last: dict[str, Any] | None = None

        def publish(  # type: ignore[override]
            self, data: dict[str, Any], metadata: Any = None, *, transient: Any = None, update: bool = False, **kw: Any
        ) -> None:
            if str(data.get("text/plain", "")).startswith("Waiting for "):
                return  # the line shown before the first token (a slow start): not the answer
            self.times.append(time.perf_counter())
            self.count += 1
            self.html_chars += len(data.get("text/html", ""))
            self.last = data if self.keep_last else None

        def clear_output(self, wait: bool = False) -> None:
            pass

    return RecordingPublisher


class _NotAKernel:
    """``shell.kernel`` is not None in Jupyter: this makes the magic pick NotebookView."""


class MagicShell:
    """An IPython InteractiveShell with ``%load_ext ollama_magic`` and a recording publisher.

    ``run(prompt)`` executes a ``%%generate`` cell; afterwards ``view`` is the view the
    magic used (a NotebookView, with its ``updates`` / ``render_seconds`` counters) and
    ``shows`` lists every display call it made: (start time, seconds, streaming?).
    """

    def __init__(self, host: str) -> None:
        os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ollama-magic-bench-ipython-"))
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        self.host = host
        self.shell = InteractiveShell.instance(config=config)
        self.shell.kernel = _NotAKernel()
        self.publisher = _recording_publisher_class()(shell=self.shell)
        self.shell.display_pub = self.publisher
        self.shell.run_line_magic("load_ext", "ollama_magic")
        self.magics = self.shell.magics_manager.registry["GenerateMagics"]
        self.view: Any = None
        self.shows: list[tuple[float, float, bool]] = []
        original_view = self.magics._view

        def view(structured: bool) -> Any:
            self.view = original_view(structured)
            self._instrument(self.view)
            return self.view

        self.magics._view = view

    def _instrument(self, view: Any) -> None:
        from ollama_magic.display.render import NotebookView

        if not isinstance(view, NotebookView):
            raise RuntimeError(f"the magic chose {type(view).__name__}, not NotebookView")
        shows = self.shows
        original_show = view._show

        def show(answer: Any) -> None:
            start = time.perf_counter()
            original_show(answer)
            shows.append((start, time.perf_counter() - start, bool(answer.streaming)))

        view._show = show

    def run(self, prompt: str, on_first: Callable[[], None] | None = None) -> tuple[int, int]:
        """Run ``%%generate`` on ``prompt``: returns (chunks, answer chars)."""
        self.publisher.reset()
        self.shows = []
        self.view = None
        self.shell.user_ns.pop("_bench_result", None)
        cell = f"%%generate -m {MODEL} --host {self.host} -o _bench_result\n{prompt}"
        if on_first is not None:
            self.publisher.times = _FirstCall(on_first)
        outcome = self.shell.run_cell(cell, store_history=False)
        outcome.raise_error()
        result = self.shell.user_ns.pop("_bench_result", None)
        if result is None or not result.complete:
            raise RuntimeError("the %%generate cell did not produce a complete result")
        return int(result.stats.eval_count or 0), len(result.text)


class _FirstCall(list):  # type: ignore[type-arg]
    """A list that calls ``on_first`` when the first item is appended (first publish)."""

    def __init__(self, on_first: Callable[[], None]) -> None:
        super().__init__()
        self._on_first = on_first

    def append(self, item: Any) -> None:
        if not self:
            self._on_first()
        super().append(item)
