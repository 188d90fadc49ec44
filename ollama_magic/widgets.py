"""A point-and-click panel for people who would rather not type magics.

``%ollama ui`` (or ``ollama_magic.widgets.GeneratePanel()``) shows a form: model, prompt,
system message, temperature, length, JSON output, thread, and Generate / Stop buttons.
The generation runs in a background thread: while a cell runs, the kernel cannot
handle a button click, so a Stop button only works if the work happens off the cell.
The panel shares conversation threads with ``%%generate`` when opened from the magic.

Widget output lives in the widget's state, not in the notebook's saved outputs; use
``%%generate`` when the answer must be saved with the notebook.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as w

from .client import OllamaClient
from .conversation import ConversationStore
from .errors import GenerationInterrupted, OllamaMagicError
from .generation import generate
from .management import model_names
from .render import Answer, footer_text
from .request import resolve_model
from .result import GenerationResult


class _Stopped(KeyboardInterrupt):
    """Raised inside the stream when Stop is clicked; generate() turns it into an interrupt."""


class GeneratePanel:
    """The form, its worker thread and its last result (``panel.result``)."""

    def __init__(
        self,
        *,
        model: str = "",
        host: str | None = None,
        conversations: ConversationStore | None = None,
        models: list[str] | None = None,
        update_interval: float = 0.1,
        timeout: float | None = 300.0,
        busy_retries: int | None = None,
        headers: dict[str, str] | None = None,
        verify: bool | str | None = None,
        api_key_hosts: list[str] | None = None,
    ) -> None:
        self.host = host or None
        self.timeout = timeout
        self.busy_retries = busy_retries
        # Credentials for the server; kept off the widgets, so nothing shows or saves them.
        self._credentials: dict[str, Any] = {"headers": headers, "verify": verify, "api_key_hosts": api_key_hosts}
        self.conversations = conversations or ConversationStore()
        self.update_interval = update_interval
        self.result: GenerationResult | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

        self.status = w.HTML()
        if models is None:
            models = self._fetch_models()
        self.model = w.Combobox(
            value=resolve_model(model) or (models[0] if models else ""),
            options=models,
            placeholder="model, e.g. llama3.2",
            description="Model",
            ensure_option=False,
        )
        self.prompt = w.Textarea(placeholder="Ask something…", layout=w.Layout(width="100%", height="7em"))
        self.system = w.Text(placeholder="optional", description="System")
        self.temperature = w.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="Temperature")
        self.num_predict = w.IntText(value=-1, description="Max tokens", tooltip="-1: no limit")
        self.json_output = w.Checkbox(value=False, description="JSON output", indent=False)
        self.thread = w.Text(value="default", description="Thread")
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.new_button = w.Button(description="New conversation", icon="refresh")
        self.output = w.HTML()
        self.generate_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.new_button.on_click(lambda _: self.new_conversation())
        self.widget = w.VBox(
            [
                w.HBox([self.model, self.thread]),
                self.prompt,
                w.HBox([self.system, self.temperature]),
                w.HBox([self.num_predict, self.json_output]),
                w.HBox([self.generate_button, self.stop_button, self.new_button]),
                self.output,
                self.status,
            ]
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _fetch_models(self) -> list[str]:
        try:
            return model_names(OllamaClient(self.host, self.timeout, **self._credentials).tags())
        except OllamaMagicError as exc:
            self._say(str(exc), error=True)
            return []

    def _say(self, message: str, *, error: bool = False) -> None:
        color = "var(--jp-error-color1, #c62828)" if error else "var(--jp-ui-font-color2, #777)"
        self.status.value = f'<div style="color:{color}">{html.escape(message)}</div>' if message else ""

    # -- actions ----------------------------------------------------------------------

    def start(self) -> threading.Thread | None:
        """Begin a generation in the background (what the Generate button does)."""
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return None
            prompt = self.prompt.value.strip()
            model = self.model.value.strip()
            if not model or not prompt:
                self._say("Choose a model and write a prompt first.", error=True)
                return None
            self._stop.clear()
            self.generate_button.disabled = True
            self.stop_button.disabled = False
            self._say("Generating…")
            self._worker = threading.Thread(target=self._run, args=(model, prompt), daemon=True)
            self._worker.start()
            return self._worker

    def stop(self) -> None:
        """Stop the running generation, keeping what was already shown."""
        self._stop.set()

    def new_conversation(self) -> None:
        """Forget this panel's thread so the next answer starts afresh."""
        self.conversations.reset(self.thread.value or "default")
        self._say(f"Thread {self.thread.value or 'default'!r} starts afresh.")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running generation ends (for scripts and tests)."""
        if self._worker is not None:
            self._worker.join(timeout)

    # -- the worker ---------------------------------------------------------------------

    def _run(self, model: str, prompt: str) -> None:
        thread = self.thread.value.strip() or "default"
        start = self.conversations.start(thread, model, None)
        parts: list[str] = []
        next_update = 0.0

        def on_chunk(piece: str, thought: str) -> None:
            nonlocal next_update
            if self._stop.is_set():
                raise _Stopped
            parts.append(piece)
            now = time.monotonic()
            if now >= next_update:
                self.output.value = Answer("".join(parts), streaming=True, verbatim=self.json_output.value).html()
                next_update = now + self.update_interval

        options: dict[str, Any] = {"temperature": self.temperature.value}
        if self.num_predict.value and self.num_predict.value > 0:
            options["num_predict"] = self.num_predict.value
        try:
            result = generate(
                prompt,
                model,
                system=self.system.value or None,
                options=options,
                format="json" if self.json_output.value else None,
                context=list(start.state.context) if start.state.context else None,
                host=self.host,
                timeout=self.timeout,
                busy_retries=self.busy_retries,
                **self._credentials,
                on_chunk=on_chunk,
                on_retry=lambda retry: self._say(retry.message()),
            )
        except OllamaMagicError as exc:
            partial: GenerationResult | None = getattr(exc, "partial", None)
            if partial is not None and partial.text:
                self.output.value = Answer(partial.text, status="⏹ stopped: the partial answer is kept").html()
            stopped = isinstance(exc, GenerationInterrupted)
            self._say("Stopped; the conversation is unchanged." if stopped else str(exc), error=not stopped)
        else:
            self.result = result
            result.thread = thread
            result.notes = [start.note] if start.note else []
            if not result.errors:
                self.conversations.commit(thread, start, result.model, result.context)
            self.output.value = Answer(
                result.text,
                thinking=result.thinking or "",
                errors=result.errors,
                data=result.data,
                has_data=self.json_output.value and not result.errors,
                verbatim=self.json_output.value,
            ).html()
            self._say(footer_text(result))
        finally:
            self.generate_button.disabled = False
            self.stop_button.disabled = True
