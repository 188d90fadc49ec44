"""A point-and-click panel for people who would rather not type magics.

``%ollama ui`` (or ``ollama_magic.widgets.panel.GeneratePanel()``) shows a form: model, prompt,
system message, temperature, length, JSON output, thread, and Generate / Stop / New
conversation buttons, above the conversation so far (each turn's prompt and answer, the
streaming one last).  The generation runs in a background thread: while a cell runs, the
kernel cannot handle a button click, so a Stop button only works if the work happens off
the cell.  Stop sets a cancel event that shuts the connection at once (see
:func:`~ollama_magic.engine.generation.generate`), so it never waits for the server's next bytes.

The panel shares conversation threads with ``%%generate`` when opened from the magic; the
conversation store settles races between them (a reset while an answer streams, or two
answers in one thread at once) and the footer says what happened.

Widget output lives in the widget's state, not in the notebook's saved outputs; use
``%%generate`` when the answer must be saved with the notebook.  A saved notebook shows
a line saying to run the cell again where the panel was.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from ..display.render import Answer, footer_text
from ..engine.connection import Connection
from ..engine.conversation import ConversationStore, check_mode, messages_of
from ..engine.errors import GenerationInterrupted, OllamaMagicError
from ..engine.generation import generate
from ..engine.request import resolve_model
from ..engine.result import GenerationResult
from ..server.management import model_names

#: What a notebook shows where the panel was once the kernel that drew it is gone.
FALLBACK = "Ollama panel: run the cell again to show it (the panel lives only while the kernel runs)."

#: Plain words and characters every system font has (no symbol-font glyphs such as ⏹).
STOPPED = "Stopped — the partial answer is kept; the conversation is unchanged."
STOPPED_EARLY = "Stopped before any answer arrived; the conversation is unchanged."
FAILED = "Failed — the conversation is unchanged."

_LABELS = {"description_width": "6.5em"}
_ANSWER_STYLE = "line-height:1.45;white-space:normal"
_PROMPT_STYLE = "font-weight:600;margin:0.6em 0 0.2em 0;white-space:pre-wrap;line-height:1.45"
_TURN_STYLE = "border-top:1px solid var(--jp-border-color2, #e0e0e0);padding:0.2em 0 0.4em 0"
_STATUS_STYLE = "opacity:0.7;font-size:0.85em;margin-top:0.4em"
_ERROR_STYLE = "color:var(--jp-error-color1, #c62828)"
_ERROR_FOOTER_STYLE = "font-size:0.85em;margin-top:0.4em;" + _ERROR_STYLE
#: The status line: the text's own colour, dimmed (a fixed grey failed contrast in the dark theme).
_QUIET_STYLE = "opacity:0.8"
#: Read by screen readers, not drawn (the usual visually-hidden rule, inline).
_SCREEN_READER_ONLY = (
    "position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);"
    "white-space:nowrap;border:0"
)


@dataclass
class Turn:
    """One prompt and its answer as shown in the panel (the answer may be partial)."""

    prompt: str
    answer_html: str = ""
    footer: str = ""
    error: bool = False
    #: False for an answer that finished after New conversation: it is not part of this one.
    in_conversation: bool = True

    def html(self) -> str:
        # An error's line is not dimmed: JupyterLab's red at 0.7 opacity is 3.2:1 on white.
        footer_style = _ERROR_FOOTER_STYLE if self.error else _STATUS_STYLE
        footer = f'<div class="ollama-panel-footer" style="{footer_style}">{html.escape(self.footer)}</div>'
        # aria-busy while the answer streams: assistive technology waits for the whole.
        busy = "false" if self.footer else "true"
        return (
            f'<div class="ollama-panel-turn" role="group" aria-label="Turn: {html.escape(self.prompt[:80])}" '
            f'style="{_TURN_STYLE}">'
            f'<div class="ollama-panel-prompt" style="{_PROMPT_STYLE}">{html.escape(self.prompt)}</div>'
            f'<div class="ollama-panel-answer" aria-live="off" aria-busy="{busy}" style="{_ANSWER_STYLE}">'
            f"{self.answer_html}</div>"
            f"{footer if self.footer else ''}</div>"
        )


class _PanelBox(w.VBox):
    """The panel's outer box; outside a live kernel it reads as a line to run the cell again."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = FALLBACK
        bundle["text/html"] = f"<p><em>{html.escape(FALLBACK)}</em></p>"
        return bundle


class _Reopened:
    """A line shown only where JupyterLab could not draw the panel (a notebook reopened),
    and the panel's focus ring.

    JupyterLab draws a widget output with its widget renderer alone, so the widget's own
    text fallback never shows there: a reopened notebook says only "Error displaying
    widget: model not found".  This second output is hidden by its inline style; its CSS
    rule shows it only in an output area where that error is shown (JupyterLab's widget
    renderer marks its own node ``jupyter-widgets`` only when it could not draw the
    widget).  Static viewers (nbviewer, GitHub) lack that node and keep the line hidden;
    they show the widget's own text fallback instead.
    """

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        rule = (
            ".jp-OutputArea:has(.jp-OutputArea-output.jupyter-widgets) "
            ".ollama-magic-panel-reopened{display:block !important}"
            # A focus ring one sees (WCAG 2.4.7): ipywidgets draws a 1 px outline, in the
            # primary button's own blue on the Generate button.  Only a live panel has this
            # rule (this output is shown with it); the ring is the theme's brand colour.
            ".ollama-magic-panel :focus-visible{outline:2px solid var(--jp-brand-color1, #1976d2) !important;"
            "outline-offset:2px !important}"
        )
        return {
            "text/html": f'<style>{rule}</style><div class="ollama-magic-panel-reopened" style="display:none">'
            f"<em>{html.escape(FALLBACK)}</em></div>",
        }


class GeneratePanel:
    """The form, its worker thread, the conversation shown, and its last result (``panel.result``)."""

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
        conversation: str = "auto",
        connection: Connection | None = None,
    ) -> None:
        #: Which server and how to reach it; the credentials stay off the widgets, so nothing
        #: shows or saves them.  ``connection`` (as %ollama ui passes it) wins over the loose keywords.
        self.connection = connection or Connection(
            host=host or None,
            timeout=timeout,
            headers=headers,
            verify=verify,
            api_key_hosts=tuple(api_key_hosts) if api_key_hosts is not None else None,
            busy_retries=busy_retries,
        )
        self.host = self.connection.host
        #: How threads continue, as %config GenerateMagics.conversation (conversation.MODES).
        self.conversation = check_mode(conversation)
        self.conversations = conversations or ConversationStore()
        self.update_interval = update_interval
        self.result: GenerationResult | None = None
        self.turns: list[Turn] = []
        self._last_turn: Turn | None = None
        self._conversation = 0  # counts New conversation clicks
        self._cancel = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

        self.status = w.HTML()
        #: How the last answer ended, for screen readers only (see _announce).
        self.announcer = w.HTML()
        if models is None:
            models = self._fetch_models()
        wide = w.Layout(width="50%", min_width="16em")
        self.model = w.Combobox(
            value=resolve_model(model) or (models[0] if models else ""),
            options=models,
            placeholder="model, e.g. llama3.2",
            description="Model",
            ensure_option=False,
            style=_LABELS,
            layout=wide,
        )
        # A description is the control's accessible name (ipywidgets links it as a <label>).
        self.prompt = w.Textarea(
            placeholder="Ask something…",
            description="Prompt",
            style=_LABELS,
            layout=w.Layout(width="auto", height="7em"),
        )
        self.system = w.Text(placeholder="optional", description="System", style=_LABELS, layout=wide)
        # A number field, not a slider: ipywidgets' slider handle has no accessible name (a
        # screen reader says only "slider"), the field is named by its label; arrows step it.
        self.temperature = w.BoundedFloatText(
            value=0.8,
            min=0.0,
            max=2.0,
            step=0.05,
            description="Temperature",
            style=_LABELS,
            layout=w.Layout(width="14em"),
        )
        self.num_predict = w.IntText(
            value=-1, description="Max tokens", tooltip="-1: no limit", style=_LABELS, layout=w.Layout(width="14em")
        )
        self.json_output = w.Checkbox(
            value=False, description="JSON output", indent=False, layout=w.Layout(width="auto")
        )
        self.thread = w.Text(value="default", description="Thread", style=_LABELS, layout=wide)
        auto = w.Layout(width="auto")
        self.generate_button = w.Button(
            description="Generate", button_style="primary", icon="play", tooltip="Send the prompt", layout=auto
        )
        self.stop_button = w.Button(
            description="Stop", icon="stop", disabled=True, tooltip="Stop the answer, keep what came", layout=auto
        )
        self.new_button = w.Button(
            description="New conversation", icon="refresh", tooltip="Forget this thread's turns", layout=auto
        )
        #: The finished turns of this conversation (prompt and answer each).
        self.history = w.HTML()
        #: The turn being generated (or the last one, until the next Generate).
        self.output = w.HTML()
        self.generate_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.new_button.on_click(lambda _: self.new_conversation())
        # Keyboard order is the page order: model, prompt, Generate (what most turns need),
        # then the options a person changes less often.
        self.widget = _PanelBox(
            [
                self.model,
                self.prompt,
                w.HBox([self.generate_button, self.stop_button, self.new_button]),
                w.HBox([self.thread, self.system]),
                w.HBox([self.temperature, self.num_predict, self.json_output]),
                self.history,
                self.output,
                self.status,
                self.announcer,
            ],
            layout=w.Layout(width="100%"),
        )
        self.widget.add_class("ollama-magic-panel")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        display(_Reopened())

    def _fetch_models(self) -> list[str]:
        try:
            return model_names(self.connection.client().tags())
        except OllamaMagicError as exc:
            self._say(str(exc), error=True)
            return []

    def _say(self, message: str, *, error: bool = False) -> None:
        """The status line: a polite live region, so a screen reader announces it once per
        change ("Generating…", "Answer complete", a failure) and never token by token;
        the answer itself is not live (it would be read again at every update)."""
        style = _ERROR_STYLE if error else _QUIET_STYLE
        role = "alert" if error else "status"
        self.status.value = (
            f'<div class="ollama-panel-status" role="{role}" aria-live="{"assertive" if error else "polite"}" '
            f'aria-atomic="true" style="{style}">{html.escape(message)}</div>'
            if message
            else ""
        )

    def _announce(self, message: str) -> None:
        """Tell a screen reader once how an answer ended (politely, after the last token),
        in a line only assistive technology reads: the turn's footer already shows it."""
        self.announcer.value = (
            f'<div class="ollama-panel-announce" role="status" aria-live="polite" aria-atomic="true" '
            f'style="{_SCREEN_READER_ONLY}">{html.escape(message)}</div>'
        )

    def _show(self, turn: Turn) -> None:
        self.output.value = turn.html()

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
            self._cancel = threading.Event()
            self.generate_button.disabled = True
            self.stop_button.disabled = False
            last = self._last_turn
            if last is not None and last.in_conversation:
                self.history.value += last.html()  # the previous turn stays in view, above
            self._last_turn = None
            self._say("Generating…")
            self.announcer.value = ""
            thread = self.thread.value.strip() or "default"
            args = (model, prompt, thread, self._cancel, self._conversation)
            self._worker = threading.Thread(target=self._run, args=args, daemon=True)
            self._worker.start()
            return self._worker

    def stop(self) -> None:
        """Stop the running generation now, keeping what was already shown."""
        self._cancel.set()

    def new_conversation(self) -> None:
        """Forget this panel's thread and clear the conversation shown; the next answer starts afresh.

        An answer still streaming is not added to the thread when it completes (the store
        knows the thread was reset since it started) and says so under it.
        """
        name = self.thread.value.strip() or "default"
        self.conversations.reset(name)
        with self._lock:
            self._conversation += 1
            self.turns = []
            self.history.value = ""
            streaming = self._worker is not None and self._worker.is_alive()
            if not streaming:
                self.output.value = ""
                self._last_turn = None
        self._say(f"Thread {name!r} starts afresh.")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running generation ends (for scripts and tests)."""
        if self._worker is not None:
            self._worker.join(timeout)

    # -- the worker ---------------------------------------------------------------------

    def _run(self, model: str, prompt: str, thread: str, cancel: threading.Event, conversation: int) -> None:
        verbatim = self.json_output.value
        # No cell id: the panel is not a cell, and must not count as one of the running
        # cell's generations (that would make a re-run cell miss its branch point).
        start = self.conversations.start(thread, model, None, mode=self.conversation)
        turn = Turn(prompt)
        parts: list[str] = []
        next_update = 0.0

        def on_chunk(piece: str, thought: str) -> None:
            nonlocal next_update
            parts.append(piece)
            now = time.monotonic()
            if now >= next_update:
                turn.answer_html = Answer("".join(parts), streaming=True, verbatim=verbatim).html()
                self._show(turn)
                next_update = now + self.update_interval

        self._show(turn)
        options: dict[str, Any] = {"temperature": self.temperature.value}
        if self.num_predict.value and self.num_predict.value > 0:
            options["num_predict"] = self.num_predict.value
        try:
            result = generate(
                prompt,
                model,
                system=self.system.value or None,
                options=options,
                format="json" if verbatim else None,
                context=start.context,
                messages=start.messages,
                client=self.connection.client(),
                on_chunk=on_chunk,
                on_retry=lambda retry: self._say(retry.message()),
                cancel=cancel,
            )
        except OllamaMagicError as exc:
            partial: GenerationResult | None = getattr(exc, "partial", None)
            text = partial.text if partial is not None else ""
            turn.answer_html = Answer(text, verbatim=verbatim).html() if text else ""
            if isinstance(exc, GenerationInterrupted):
                turn.footer = STOPPED if text else STOPPED_EARLY
                self._say("")
                self._announce(turn.footer)
            else:
                turn.footer, turn.error = FAILED, True
                self._say(str(exc), error=True)
            self.result = partial
        else:
            self.result = result
            result.thread = thread
            result.notes = [start.note] if start.note else []
            if not result.errors:
                commit = self.conversations.commit(thread, start, result.model, result.context, result=result)
                if commit.state is not None:
                    result.messages = messages_of(commit.state.history())
                if commit.note:
                    result.notes.append(commit.note)
            turn.answer_html = Answer(
                result.text,
                thinking=result.thinking or "",
                errors=result.errors,
                data=result.data,
                has_data=verbatim and not result.errors,
                verbatim=verbatim,
            ).html()
            turn.footer = " · ".join([footer_text(result), *result.notes])  # footer_text() leaves notes out
            self._say("")
            self._announce(f"Answer complete. {turn.footer}")
        finally:
            with self._lock:
                turn.in_conversation = conversation == self._conversation
                if turn.in_conversation:
                    self.turns.append(turn)
                self._last_turn = turn
                self._show(turn)
                self.generate_button.disabled = False
                self.stop_button.disabled = True
