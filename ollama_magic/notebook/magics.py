"""The IPython magics: ``%%generate`` / ``%generate`` and ``%ollama``.

Thin by design: parse the line (:mod:`.arguments`), pick where the conversation
continues (:mod:`.conversation`), run :func:`~ollama_magic.engine.generation.generate` with a
view (:mod:`.render`), and remember the result.  Errors become one line each.
"""

from __future__ import annotations

import re
import sys
import tokenize
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.display import display
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, Union

from ..batch.cache import CellCache
from ..display.logprobs import TokenProbabilities
from ..display.notes import show_note
from ..display.render import NotebookView, TerminalView, View, footer_text
from ..engine import busy, structured
from ..engine.client import OllamaClient
from ..engine.connection import Connection, split
from ..engine.conversation import MODES, ConversationStore, Start, messages_of
from ..engine.errors import GenerationInterrupted, InvalidRequestError, OllamaMagicError
from ..engine.generation import generate
from ..engine.host import parse_host
from ..engine.request import resolve_model
from ..engine.result import GenerationResult
from .arguments import Call, build_call, generate_arguments, split_line
from .provenance import provenance

_LINE_GENERATE = re.compile(r"^(\s*)%generate(\s.*)?\?\s*$")


def keep_question_marks(lines: list[str]) -> list[str]:
    """Let a one-line ``%generate ... why?`` end with a question mark.

    IPython reads a line ending in ``?`` as a request for help on its last word; a
    prompt is usually a question, so such ``%generate`` lines are turned into the
    explicit magic call before IPython's help transformer sees them.

    Only a line that IPython itself would run as the ``%generate`` magic is touched: one
    that starts a logical line of Python (found with IPython's own tokenizer), in a cell
    that is not a cell magic.  A ``%generate why?`` line in a ``%%generate`` prompt, in a
    string literal, or continuing a bracket or a backslash is left exactly as written.
    """
    candidates = [i for i, line in enumerate(lines) if _LINE_GENERATE.match(line)]
    if not candidates:
        return lines
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("%%"):
        return lines  # a cell magic's body is its own text (e.g. a %%generate prompt)
    out = list(lines)
    for i in candidates:
        # Tokenized again after each rewrite: a rewritten line is plain Python, so a quote
        # or bracket in an earlier prompt cannot swallow the lines after it.
        if i not in _logical_line_starts(out):
            continue
        match = _LINE_GENERATE.match(out[i])
        assert match is not None
        rest = out[i].strip()[len("%generate") :].strip()
        out[i] = f"{match.group(1)}get_ipython().run_line_magic('generate', {rest!r})\n"
    return out


def _logical_line_starts(lines: list[str]) -> set[int]:
    """Indexes of the lines that begin a statement with ``%generate`` (not inside a string or brackets).

    Uses the tokenizer IPython uses for its own escapes (``%``, ``!``, ``?``), so a line
    counts as a statement exactly when IPython would run it as a magic.
    """
    from IPython.core.inputtransformer2 import make_tokens_by_line

    try:
        tokens_by_line = make_tokens_by_line(lines)
    except Exception:  # a tokenizer surprise: touch nothing rather than guess
        return set()
    starts = set()
    skip = {tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT}
    for tokens in tokens_by_line:
        real = [t for t in tokens if t.type not in skip]
        if len(real) < 2 or real[0].string != "%" or real[1].string != "generate":
            continue
        if real[1].start[0] == real[0].start[0]:
            # Like IPython, the magic is this one physical line, whatever brackets it has.
            starts.add(real[0].start[0] - 1)
    return starts


@magics_class
class GenerateMagics(Magics):
    """Ollama text generation in notebook cells.  Settings: ``%config GenerateMagics``."""

    model = Unicode(
        "", help="Default model for %%generate (e.g. 'llama3.2'). Empty: OLLAMA_MAGIC_MODEL, read at each request."
    ).tag(config=True)
    host = Unicode(
        "", help="Ollama server, e.g. '127.0.0.1:11434'. Empty: OLLAMA_HOST, read at each request, else the default."
    ).tag(config=True)
    timeout = Float(
        300.0, allow_none=True, help="Seconds to wait for the server to connect or send the next part of an answer."
    ).tag(config=True)
    keep_alive = Unicode("", help="Default keep_alive (e.g. '5m', '0', '-1'); empty: the server's default.").tag(
        config=True
    )
    busy_retries = Int(
        busy.DEFAULT_RETRIES,
        help="How many times a busy server (HTTP 503/429, before any answer) is asked again; "
        f"the default {busy.DEFAULT_RETRIES} waits about a minute in all (jittered 1, 2, 4, 8, 16, 30 s). 0: never.",
    ).tag(config=True)
    headers = Dict(
        value_trait=Unicode(),
        help="HTTP headers sent with every request to the server, e.g. {'Authorization': 'Bearer ...'}; never shown.",
    ).tag(config=True)
    api_key_hosts = List(
        Unicode(),
        help="Hosts (name, name:port or URL) that may receive OLLAMA_API_KEY besides https://ollama.com; "
        "OLLAMA_API_KEY_HOSTS adds to it.",
    ).tag(config=True)
    verify = Union(
        [Bool(), Unicode()],
        default_value=True,
        help="TLS certificate checks for https:// hosts: True (REQUESTS_CA_BUNDLE honoured), "
        "a CA bundle path, or False (warned about once per host).",
    ).tag(config=True)
    options = Dict(help="Model options merged under each cell's --options and shortcuts.").tag(config=True)
    conversation = Enum(
        list(MODES),
        default_value="auto",
        help="How a thread continues: 'auto' sends the context while the server returns one and the thread's "
        "messages (/api/chat) otherwise or when the model changes; 'context' only the context; 'messages' "
        "always the messages. A cell's --conversation overrides it.",
    ).tag(config=True)
    show_stats = Bool(True, help="Show the statistics footer under each answer.").tag(config=True)
    update_interval = Float(0.05, help="Seconds between display updates while an answer streams.").tag(config=True)
    cache = Unicode(
        "", help="SQLite file for %%generate --each batches' answers (a cell's --cache PATH overrides it)."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.conversations = ConversationStore()
        self.cell_id: str | None = None
        self.last_error: Any = None  # explain.LastError of the last cell that failed
        self._versions: dict[str, str | None] = {}  # server URL -> its version, for output metadata

    # -- IPython events -------------------------------------------------------------

    def post_run_cell(self, result: Any) -> None:
        """Remember the last cell that failed, for ``%ollama explain`` (not explain's own errors)."""
        from .explain import from_run

        error = from_run(result)
        raw = getattr(getattr(result, "info", None), "raw_cell", "") or ""
        if error is not None and not raw.lstrip().startswith("%ollama explain"):
            self.last_error = error

    def pre_run_cell(self, info: Any) -> None:
        """Note which notebook cell runs (Jupyter sends its id) and that a new execution began."""
        self.cell_id = getattr(info, "cell_id", None)
        self.conversations.new_execution()

    # -- %%generate -----------------------------------------------------------------

    @no_var_expand
    @generate_arguments
    @line_cell_magic
    def generate(self, line: str, cell: str | None = None) -> None:
        """Generate text with Ollama; the cell body (or the rest of the line) is the prompt.

        The answer streams into the cell, with the model's statistics under it.  The next
        %%generate in the same --thread continues the conversation.  Errors are one line;
        Ctrl-C (interrupt the kernel) stops the answer and keeps what was shown.
        """
        call = self._parse(line, cell)
        if call.each is not None and (len(call.models) > 1 or call.expect is not None):
            self._run_evaluation(call)
        elif call.each is not None:
            self._run_batch(call)
        else:
            self._run(call)

    def _defaults(self) -> dict[str, Any]:
        return {
            "model": resolve_model(self.model),  # else OLLAMA_MAGIC_MODEL, read at each cell
            "host": self.host,
            "timeout": self.timeout,
            "keep_alive": self.keep_alive,
            "options": self.options,
            "cache": self.cache,
            "busy_retries": self.busy_retries,
            "conversation": self.conversation,
        }

    def _parse(self, line: str, cell: str | None) -> Call:
        parser = self.generate.parser  # type: ignore[attr-defined]
        tokens, rest = split_line(parser, line)
        args = parser.parse_args(tokens)
        if cell is not None and rest:
            raise UsageError(f"Unexpected text on the %%generate line: {rest!r}. The prompt goes in the cell body.")
        # Trailing newlines of a cell body are an artefact of the editor, not part of the prompt.
        prompt = cell.lstrip("\n").rstrip() if cell is not None else rest
        if not prompt.strip():
            raise UsageError(
                "The prompt is empty: write it in the cell body under %%generate, or after %generate's options."
            )
        try:
            call = build_call(args, prompt, namespace=self.shell.user_ns, defaults=self._defaults())
            parse_host(call.kwargs["host"])
            # The settings, then this line's --host, --timeout and --busy-retries: one value,
            # which names where its host came from, for the "could not reach" line.
            connection = self.connection().replace(host_option=call.host_origin)
            call.connection, call.kwargs = split({**call.kwargs, "connection": connection})
            if call.kwargs["format"] is not None:
                call.kwargs["format"] = structured.resolve_format(call.kwargs["format"])
        except (InvalidRequestError, OllamaMagicError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        return call

    def _view(self, structured: bool) -> View:
        """A live display handle in a kernel; text written as it arrives in a terminal."""
        if getattr(self.shell, "kernel", None) is not None:
            return NotebookView(display, interval=self.update_interval, structured=structured)
        return TerminalView(interval=self.update_interval)

    def _run(self, call: Call) -> GenerationResult | None:
        if len(call.models) > 1:
            self._compare(call)
            return None
        kwargs = call.kwargs
        model = kwargs["model"]
        start: Start | None = None
        if not call.no_context:
            start = self.conversations.start(call.thread, model, self.cell_id, fresh=call.new, mode=call.conversation)
            kwargs["context"], kwargs["messages"] = start.context, start.messages
        view = self._view(structured=kwargs["format"] is not None)
        total = kwargs["retries"] + 1
        notes = [start.note] if start and start.note else []
        show_footer = self.show_stats and not call.quiet

        cached = CellCache.open(call.cache, kwargs, call.connection)
        if cached is not None and cached.hit is not None:
            # The stored answer for this exact request, in this exact conversation position
            # (the context sent is part of the key): the thread moves on exactly as it did
            # when the answer was generated, so a re-run notebook replays consistently.
            result = cached.hit
            result.thread = None if call.no_context else call.thread
            result.notes = [*notes, "from cache"]
            view.finish(result, footer_text(result) if show_footer else None, "from cache: nothing was sent")
            self._remember(call, start, result, model)
            return result

        def on_attempt(number: int, payload: dict[str, Any]) -> None:
            view.attempt(number, total)
            view.waiting(payload["model"])

        def on_result(result: GenerationResult) -> None:
            result.thread = None if call.no_context else call.thread
            result.notes = list(notes)
            if start is not None and not result.errors:
                # Committed before the footer is drawn, so the footer can say what the
                # commit found: a reset or another answer since this one started.
                commit = self.conversations.commit(
                    call.thread, start, result.model or model, result.context, result=result
                )
                _thread_messages(result, commit.state)
                if commit.note:
                    result.notes.append(commit.note)
                    if not show_footer:
                        show_note(commit.note)
            status = ""
            if result.errors and total > 1:
                status = "rejected: the answer does not match the schema"
            metadata = None
            if isinstance(view, NotebookView):  # only a notebook output keeps metadata
                version = self._server_version(call.connection)
                metadata = provenance(result, thread=result.thread, server_version=version)
            view.finish(result, footer_text(result) if show_footer else None, status, metadata=metadata)
            if result.logprobs:
                display(TokenProbabilities(result.logprobs, model=result.model))

        try:
            result = generate(
                **kwargs,
                client=call.connection.client(),
                on_chunk=view.chunk,
                on_attempt=on_attempt,
                on_result=on_result,
                on_warning=show_note,
                on_retry=lambda retry: view.notice(retry.message()),
            )
        except InvalidRequestError as exc:
            view.stopped(None)
            raise UsageError(str(exc)) from None
        except OllamaMagicError as exc:
            partial: GenerationResult | None = getattr(exc, "partial", None)
            if call.out:
                self.shell.user_ns[call.out] = _failed_result(partial, exc, model, call)
            # What arrived stays on screen, as it is; the error (or, for Ctrl-C, the calm
            # "Interrupted: ..." line) is the one message, under it.  The cell fails, so
            # "Run All" stops here.  A waiting line or a busy server's "retry N of M" line
            # goes: it would promise an answer or a retry that will not come.
            view.stopped(partial)
            raise
        except BaseException:
            view.stopped(None)
            raise
        if cached is not None:
            cached.store(result)
        if call.out:
            self.shell.user_ns[call.out] = result
        self._to_cell(call, result)
        return result

    def _remember(self, call: Call, start: Start | None, result: GenerationResult, model: str) -> None:
        """A cached answer moves the thread on as when it was generated, and ``-o`` holds it.

        (A generated answer is committed in ``on_result``, before its footer is drawn.)
        """
        if start is not None and not result.errors:
            commit = self.conversations.commit(call.thread, start, result.model or model, result.context, result=result)
            _thread_messages(result, commit.state)
        if call.out:
            self.shell.user_ns[call.out] = result
        self._to_cell(call, result)

    def _to_cell(self, call: Call, result: GenerationResult) -> None:
        """--to-cell: the complete answer's code (or the answer) into a new cell below, not run."""
        if call.to_cell and result.complete and result.text.strip():
            from .tocell import cell_text

            self.shell.set_next_input(cell_text(result.text), replace=False)

    def _run_batch(self, call: Call) -> None:
        """``--each``: every item through generate_many, a progress bar, then the table."""
        from ..batch import each
        from ..batch.runner import BatchInterrupted, generate_many
        from ..batch.view import NotebookProgress, TerminalProgress

        prompts = call.prompts or []
        rows = 10
        if getattr(self.shell, "kernel", None) is not None:
            view: Any = NotebookProgress(display, prompts=prompts, rows=rows)
        else:
            view = TerminalProgress(sys.stdout, prompts=prompts, rows=rows)
        kwargs = {k: v for k, v in call.kwargs.items() if k != "prompt"}
        try:
            results = generate_many(
                prompts,
                concurrency=call.concurrency,
                progress=view,
                cache=call.cache,
                on_warning=show_note,
                connection=call.connection,
                **kwargs,
            )
        except BatchInterrupted as exc:
            if call.out:
                self.shell.user_ns[call.out] = each.output(call.each, exc.results, kwargs.get("format"))
            raise
        except InvalidRequestError as exc:
            raise UsageError(str(exc)) from None
        if call.out:
            self.shell.user_ns[call.out] = each.output(call.each, results, kwargs.get("format"))

    def _run_evaluation(self, call: Call) -> None:
        """``--each`` with several -m or ``--expect``: every row to every model, scored (evaluation.py)."""
        from ..evaluation.model import EvaluationInterrupted
        from ..evaluation.runner import evaluate
        from ..evaluation.view import NotebookEvaluation, TerminalEvaluation

        if getattr(self.shell, "kernel", None) is not None:
            view: Any = NotebookEvaluation(display)
        else:
            view = TerminalEvaluation(sys.stdout)
        kwargs = {k: v for k, v in call.kwargs.items() if k not in ("prompt", "model")}
        try:
            evaluation = evaluate(
                call.each,
                call.models,
                call.kwargs["prompt"],
                expect=call.expect,
                concurrency=call.concurrency,
                cache=call.cache,
                progress=view,
                namespace=self.shell.user_ns,
                on_warning=lambda message: print(f"Note: {message}", file=sys.stderr),
                connection=call.connection,
                **kwargs,
            )
        except EvaluationInterrupted as exc:
            if call.out:
                self.shell.user_ns[call.out] = exc.evaluation
            raise
        except InvalidRequestError as exc:
            raise UsageError(str(exc)) from None
        if call.out:
            self.shell.user_ns[call.out] = evaluation

    def _compare(self, call: Call) -> Any:
        """Several -m: the same prompt to each model at once, in columns (comparison.py)."""
        from ..batch.comparison import ComparisonView, LiveComparison, TerminalComparison, compare, thread_name

        kwargs = dict(call.kwargs)
        prompt = kwargs.pop("prompt")
        kwargs.pop("model")
        starts: dict[str, Start] = {}
        if not call.no_context:
            for model in call.models:
                starts[model] = self.conversations.start(
                    thread_name(call.thread, model), model, self.cell_id, fresh=call.new, mode=call.conversation
                )
        contexts = {m: s.context for m, s in starts.items()}
        messages = {m: s.messages for m, s in starts.items()}

        def footer(model: str, result: GenerationResult) -> str:
            start = starts.get(model)
            result.thread = None if call.no_context else thread_name(call.thread, model)
            result.notes = [start.note] if start is not None and start.note else []
            return footer_text(result)

        view = ComparisonView(
            call.models,
            structured_output=kwargs["format"] is not None,
            footer=footer if self.show_stats and not call.quiet else None,
        )
        if getattr(self.shell, "kernel", None) is not None:
            shown: LiveComparison | TerminalComparison = LiveComparison(view, display, self.update_interval)
        else:
            shown = TerminalComparison(view)
        try:
            results = compare(
                prompt,
                call.models,
                context=contexts,
                messages=messages,
                on_event=shown.on_event,
                on_tick=shown.on_tick,
                connection=call.connection,
                **kwargs,
            )
        except InvalidRequestError as exc:
            raise UsageError(str(exc)) from None
        except GenerationInterrupted as exc:
            shown.on_tick()
            if call.out:
                self.shell.user_ns[call.out] = exc.partial
            raise
        for model, result in results.items():
            result.thread = None if call.no_context else thread_name(call.thread, model)
            start = starts.get(model)
            if start is not None and result.complete and not result.errors and model not in results.errors:
                commit = self.conversations.commit(
                    thread_name(call.thread, model), start, result.model or model, result.context, result=result
                )
                _thread_messages(result, commit.state)
        if isinstance(shown, LiveComparison):  # only a notebook output keeps metadata
            version = self._server_version(call.connection)
            view.metadata = {
                "comparison": [provenance(r, thread=r.thread, server_version=version) for r in results.values()]
            }
            shown.show()
        if call.out:
            self.shell.user_ns[call.out] = results
        if len(results.errors) == len(call.models):
            raise OllamaMagicError(f"Every model failed; the first: {results.errors[call.models[0]]}")
        return results

    def _server_version(self, connection: Connection) -> str | None:
        """The server's version for the output metadata: asked once per server, None if unknown."""
        client = connection.probe()
        url = client.base_url
        if url not in self._versions:
            try:
                self._versions[url] = client.version()
            except OllamaMagicError:
                self._versions[url] = None
        return self._versions[url]

    # -- %ollama --------------------------------------------------------------------

    def connection(self) -> Connection:
        """Which server and how to reach it, from the settings; checked here (a bad header is
        one line that names no secret).  Built once per cell and passed down."""
        return Connection(
            host=self.host or None,
            timeout=self.timeout,
            headers=self.headers or None,
            verify=self.verify,
            api_key_hosts=tuple(self.api_key_hosts) or None,
            busy_retries=self.busy_retries,
            host_option="%config GenerateMagics.host",
        )

    def client(self) -> OllamaClient:
        """A client for the configured server (OLLAMA_HOST is read at each request).

        A busy server is retried as for %%generate, each wait announced as a note (stderr in a terminal)."""
        try:
            connection = self.connection()
        except OllamaMagicError as exc:
            raise UsageError(str(exc)) from None
        return connection.client(on_retry=lambda retry: show_note(retry.message(), label=""))

    @line_magic
    def ollama(self, line: str) -> None:
        """Manage Ollama and the conversations: %ollama help lists the commands.

        list | ps | show MODEL | pull MODEL | version | threads | history | save | load | reset [THREAD] | ui | help
        """
        from . import subcommands

        subcommands.run(self, line)


def _thread_messages(result: GenerationResult, state: Any) -> None:
    """``result.messages``: the whole thread's messages once the answer joined it."""
    if state is not None:
        result.messages = messages_of(state.history())


def _failed_result(partial: GenerationResult | None, exc: Exception, model: str, call: Call) -> GenerationResult:
    """What ``-o NAME`` holds after a failure: the partial answer (maybe empty) and why it stopped.

    Never the previous run's answer: a stale value under the same name would pass for this one.
    """
    result = partial if partial is not None else GenerationResult(text="", model=model, complete=False)
    result.complete = False
    result.error = result.error or str(exc)
    result.thread = None if call.no_context else call.thread
    return result
