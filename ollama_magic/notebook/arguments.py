"""Parsing the ``%%generate`` line into a request.

The options are declared once here (IPython's ``magic_arguments``, which also gives
``%%generate?`` its help).  :func:`split_line` separates the options from a prompt
written on the same line (``%generate -m llama3.2 Why is the sky blue?``) without
tokenising the prompt, so apostrophes and quotes in it survive as typed.
:func:`build_call` turns the parsed options into keyword arguments for
:func:`ollama_magic.generate`, checking everything that can be checked locally.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicHelpFormatter, argument, magic_arguments

from ..engine.connection import Connection
from ..engine.errors import InvalidRequestError
from ..engine.request import MAX_TOP_LOGPROBS, check_options, merge_options, normalize_keep_alive

F = TypeVar("F", bound=Callable[..., Any])

THINK_LEVELS = ("low", "medium", "high", "max", "true", "false")
#: How many alternatives per token ``--logprobs`` asks for when given no number.
DEFAULT_TOP_LOGPROBS = 5

_ARGUMENTS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("-m", "--model"),
        {
            "action": "append",
            "help": "Model name (default: %%config GenerateMagics.model, else OLLAMA_MAGIC_MODEL); "
            "give -m several times (or a variable holding a list of names) to compare models.",
        },
    ),
    (("--system",), {"help": "System message, overriding the model's."}),
    (("--template",), {"help": "Prompt template, overriding the model's."}),
    (("--suffix",), {"help": "Text after the answer (fill-in-the-middle models)."}),
    (("--raw",), {"action": "store_true", "help": "Send the prompt without template; no context is sent or kept."}),
    (
        ("--images",),
        {"nargs": "+", "metavar": "PATH_OR_VAR", "help": "Image files, or variables holding bytes or PIL images."},
    ),
    (
        ("--format",),
        {"help": "'json', a JSON schema (inline, a .json file, or a variable holding a dict or pydantic model)."},
    ),
    (
        ("--schema-in-prompt",),
        {
            "dest": "schema_in_prompt",
            "action": "store_true",
            "default": None,
            "help": "Also state the schema in the prompt (the default for schemas).",
        },
    ),
    (
        ("--no-schema-in-prompt",),
        {"dest": "schema_in_prompt", "action": "store_false", "help": "Do not add the schema to the prompt."},
    ),
    (("--retries",), {"type": int, "default": 0, "help": "Ask again up to N times when the answer fails the schema."}),
    (
        ("--think",),
        {
            "nargs": "?",
            "const": True,
            "metavar": "LEVEL",
            "help": "Ask a reasoning model to think (optionally low/medium/high/max).",
        },
    ),
    (
        ("--no-think",),
        {
            "dest": "think",
            "action": "store_const",
            "const": False,
            "help": "Send think: false (Ollama 0.12.4+ lets models that can think do so unless told not to).",
        },
    ),
    (
        ("--truncate",),
        {"dest": "truncate", "action": "store_true", "default": None, "help": "Send truncate: true."},
    ),
    (
        ("--no-truncate",),
        {
            "dest": "truncate",
            "action": "store_false",
            "help": "Send truncate: false: a prompt longer than the context is an error, not cut (Ollama 0.12.6+).",
        },
    ),
    (("--shift",), {"dest": "shift", "action": "store_true", "default": None, "help": "Send shift: true."}),
    (
        ("--no-shift",),
        {
            "dest": "shift",
            "action": "store_false",
            "help": "Send shift: false: stop at a full context instead of dropping its start (Ollama 0.12.6+).",
        },
    ),
    (
        ("--logprobs",),
        {
            "nargs": "?",
            "const": DEFAULT_TOP_LOGPROBS,
            "type": int,
            "metavar": "N",
            "help": "Each token's probability and its N likeliest alternatives (0-20, default 5; Ollama 0.12.11+).",
        },
    ),
    (("--options",), {"metavar": "JSON", "help": "Model options as a JSON object, e.g. '{\"num_ctx\": 8192}'."}),
    (("-t", "--temperature"), {"type": float, "help": "options.temperature"}),
    (("--seed",), {"type": int, "help": "options.seed"}),
    (("--num-predict",), {"type": int, "help": "options.num_predict: the most tokens to generate."}),
    (("--top-k",), {"type": int, "help": "options.top_k"}),
    (("--top-p",), {"type": float, "help": "options.top_p"}),
    (("--num-ctx",), {"type": int, "help": "options.num_ctx: the context window."}),
    (("--stop",), {"nargs": "+", "metavar": "TEXT", "help": "options.stop: stop sequences."}),
    (("--no-stream",), {"action": "store_true", "help": "Send stream: false and show the answer when complete."}),
    (("--keep-alive",), {"metavar": "DURATION", "help": "How long the model stays loaded (e.g. 5m, 0, -1)."}),
    (("--thread",), {"help": "Conversation thread (default: 'default')."}),
    (("--new",), {"action": "store_true", "help": "Start the thread afresh."}),
    (("--no-context",), {"action": "store_true", "help": "Neither send nor store conversation context."}),
    (
        ("--conversation",),
        {
            "choices": ["auto", "context", "messages"],
            "help": "How the thread continues: auto (context while the server gives one, else the messages "
            "through /api/chat), context, or messages (default: %%config GenerateMagics.conversation).",
        },
    ),
    (("-o", "--out"), {"metavar": "NAME", "help": "Store the result object in this variable."}),
    (("--quiet",), {"action": "store_true", "help": "Hide the statistics footer."}),
    (
        ("--to-cell",),
        {
            "action": "store_true",
            "help": "Put the answer's first code block (or the whole answer) into a new cell below; nothing runs.",
        },
    ),
    (("--no-interpolate",), {"action": "store_true", "help": "Send the prompt verbatim, without {name} filling."}),
    (
        ("--each",),
        {
            "metavar": "VAR",
            "help": "Run the cell once per item of a list/tuple/Series ({item}, {index}) or DataFrame row ({column}).",
        },
    ),
    (
        ("--concurrency",),
        {"type": int, "metavar": "N", "help": "With --each: requests in flight (default 2; the server's slots)."},
    ),
    (
        ("--expect",),
        {
            "metavar": "COLUMN|COLUMN=PROPERTY|CALLABLE",
            "help": "With --each: score each answer against this column (or one property of the --format "
            "object), or with score(answer, row) -> float; gives accuracy per model.",
        },
    ),
    (
        ("--cache",),
        {"metavar": "PATH", "help": "SQLite file of finished answers: serve them again, store new ones."},
    ),
    (("--host",), {"metavar": "URL", "help": "Ollama server (default: %%config GenerateMagics.host / OLLAMA_HOST)."}),
    (("--timeout",), {"type": float, "metavar": "SECONDS", "help": "Seconds to wait for the server to answer."}),
    (
        ("--busy-retries",),
        {
            "type": int,
            "metavar": "N",
            "help": "Ask a busy server (HTTP 503/429) again up to N times "
            "(default: %%config GenerateMagics.busy_retries).",
        },
    ),
]


#: The usage lines of ``%%generate?`` (argparse %-formats usage: ``%%`` is one ``%``).
USAGE = """\
%%%%generate [options]
  PROMPT: the cell body, any number of lines

  %%generate [options] PROMPT: the one-line form"""

#: After the description in ``%%generate?``, before the options.
EXAMPLES = """\
Examples:
  %%generate -m llama3.2
  Why is the sky blue? Answer in two sentences.

  %%generate -m llama3.2 --thread story --new -t 0.9 --num-predict 200
  Start a short story about a lighthouse keeper.

  %%generate -m llama3.2 --format '{"type": "object", "properties": {"city": {"type": "string"}}}' -o r
  Which city is the Eiffel Tower in?
  (then r.data is the parsed JSON)

  %%generate -m llama3.2
  Summarise in three bullets: {notes}
  (notes: a variable set in an earlier cell)

  %generate -m llama3.2 What is a monad, in one line?

  %%generate --each reviews -m llama3.2 -m qwen2.5 --expect label -o ev
  Is this review positive or negative? One word. {text}
  (every row to every model, scored against the label column: ev.summary)

Placeholders: {name}, {obj.attr}, {seq[0]} or {x:.2f} in the prompt are filled from your
variables; only these clear placeholders are, so pasted JSON or code such as
{"name": "Ada"} or { return x; } is sent as typed.  {{name}} sends {name} as typed;
--no-interpolate sends the whole prompt as typed.  An unknown variable is an error, and
nothing is sent.

Options:"""


class _HelpFormatter(MagicHelpFormatter):
    """IPython's magic help, without the reStructuredText ``::`` before the usage."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = "Usage:\n  ") -> None:
        argparse.RawDescriptionHelpFormatter.add_usage(self, usage, actions, groups, prefix)

    def start_section(self, heading: Any) -> None:
        # The "options:" heading is the end of EXAMPLES, which says "Options:".
        super().start_section(None)


def generate_arguments(func: F) -> F:
    """Decorate a magic with every ``%%generate`` option, and ``%%generate?``'s help:
    usage, the magic's docstring, examples and the placeholder rule, then the options."""
    for flags, kwargs in reversed(_ARGUMENTS):
        func = argument(*flags, **kwargs)(func)
    description = inspect.cleandoc(func.__doc__ or "") + "\n\n" + EXAMPLES
    func.argcmd_kwds = {  # type: ignore[attr-defined]
        "usage": USAGE,
        "description": description,
        "formatter_class": _HelpFormatter,
    }
    return magic_arguments()(func)  # type: ignore[no-any-return]


def _next_token(line: str, pos: int) -> tuple[str, int]:
    lexer = shlex.shlex(line[pos:], posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        token = lexer.get_token()
    except ValueError as exc:
        raise UsageError(f"Cannot read the %generate line ({exc}): check its quotes.") from None
    consumed = lexer.instream.tell()  # type: ignore[union-attr]
    return token or "", pos + consumed


def _skip_space(line: str, pos: int) -> int:
    while pos < len(line) and line[pos].isspace():
        pos += 1
    return pos


def split_line(parser: argparse.ArgumentParser, line: str) -> tuple[list[str], str]:
    """Split a magic line into option tokens and the prompt text that follows them.

    Options come first; the prompt starts at the first word that is not an option or an
    option's value, or after ``--``.  Options taking several values (``--images``,
    ``--stop``) take every following word up to the next option, so on a one-line
    ``%generate`` end them with ``--`` before the prompt.
    """
    actions = parser._option_string_actions
    tokens: list[str] = []
    pos = _skip_space(line, 0)
    while pos < len(line) and line[pos] == "-":
        token, pos = _next_token(line, pos)
        if token == "--":
            break
        name = token.split("=", 1)[0]
        action = actions.get(name)
        if action is None:
            close = [o for o in actions if o.startswith(name)]
            hint = f" (did you mean {', '.join(close)}?)" if close and name.startswith("--") else ""
            raise UsageError(f"Unknown option {name!r} for %%generate{hint}; see %%generate? for the list.")
        tokens.append(token)
        if "=" in token or action.nargs == 0:
            pos = _skip_space(line, pos)
            continue
        pos = _skip_space(line, pos)
        if action.nargs is None:
            if pos >= len(line):
                raise UsageError(f"Option {name} needs a value.")
            value, pos = _next_token(line, pos)
            tokens.append(value)
        elif action.nargs == "?":
            if pos < len(line):
                value, end = _next_token(line, pos)
                # An optional value is taken only when it is one (a level, a count), so
                # `%generate --think Why...` and `--logprobs Why...` keep their prompt.
                if (value.lower() in THINK_LEVELS) if action.type is None else value.isdigit():
                    tokens.append(value)
                    pos = end
        elif action.nargs == "+":
            while pos < len(line) and line[pos] != "-":
                value, pos = _next_token(line, pos)
                tokens.append(value)
                pos = _skip_space(line, pos)
        pos = _skip_space(line, pos)
    return tokens, line[pos:].strip()


@dataclass
class Call:
    """What one ``%%generate`` asks for: keyword arguments for generate plus the magic's own."""

    kwargs: dict[str, Any]
    thread: str = "default"
    new: bool = False
    no_context: bool = False
    #: How the thread continues: "auto", "context" or "messages" (conversation.py).
    conversation: str = "auto"
    out: str | None = None
    quiet: bool = False
    #: --each: the variable's value, the prompts filled from the template, and its name.
    each: Any = None
    each_name: str | None = None
    prompts: list[str] | None = None
    concurrency: int = 2
    cache: str | None = None
    to_cell: bool = False
    #: Every -m given, in order; more than one means a comparison (comparison.py), or with
    #: --each an evaluation (evaluation.py).
    models: list[str] = field(default_factory=list)
    #: --expect: how an evaluation scores each row (a column, COLUMN=PROPERTY, a callable's name).
    expect: str | None = None
    #: Where the host came from ("--host", the %config setting; None: OLLAMA_HOST or the
    #: default), so a connection error names the setting to fix.
    host_origin: str | None = None
    #: Which server and how to reach it: the settings, the line's --host, --timeout and
    #: --busy-retries, built once when the line is parsed and passed down (engine/connection.py).
    connection: Connection = field(default_factory=Connection)


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"{what} is not valid JSON ({exc}); put it in single quotes, e.g. --options '{{\"num_ctx\": 8192}}'."
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object like '{{\"temperature\": 0}}', not {type(value).__name__}.")
    return value


def _think(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return lowered


def _models(given: list[str] | None, namespace: Mapping[str, Any]) -> list[str]:
    """The -m values, a variable holding a list of model names standing for its names.

    So a notebook can choose its models in Python (from ``%ollama list``, an environment
    variable...) and compare them with ``-m models``.
    """
    models: list[str] = []
    for name in given or []:
        value = namespace.get(name) if name.isidentifier() else None
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            models.extend(value)
        else:
            models.append(name)
    return models


def build_call(
    args: argparse.Namespace,
    prompt: str,
    *,
    namespace: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> Call:
    """Check the parsed options and gather everything :func:`generate` needs.

    ``defaults`` holds the configured traits (model, host, timeout, keep_alive, options, busy_retries).
    Raises UsageError for anything wrong, before any request is made.
    """
    from ..engine.interpolate import interpolate

    each, prompts = _each(args, prompt, namespace)
    if not args.no_interpolate and each is None:
        prompt = interpolate(prompt, namespace)
    if args.out is not None and not args.out.isidentifier():
        raise UsageError(f"-o/--out needs a variable name, not {args.out!r}.")
    per_cell = _json_object(args.options, "--options") if args.options else None
    shortcuts = {
        "temperature": args.temperature,
        "seed": args.seed,
        "num_predict": args.num_predict,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "num_ctx": args.num_ctx,
        "stop": args.stop,
    }
    for flag, value in (("-t/--temperature", args.temperature), ("--top-p", args.top_p)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} must be a finite number, not {value}.")
    if args.num_predict is not None and args.num_predict < -2:
        raise UsageError(
            f"--num-predict must be the most tokens to generate, or -1 for no limit, -2 to fill the context; "
            f"not {args.num_predict}."
        )
    options = merge_options(defaults.get("options"), per_cell, shortcuts)
    try:
        check_options(options)
    except InvalidRequestError as exc:
        raise UsageError(str(exc)) from None
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more.")
    if args.retries and not args.format:
        raise UsageError("--retries only applies with --format (it retries answers that fail the schema).")
    fmt: Any = None
    if args.format is not None:
        text = args.format.strip()
        fmt = namespace[text] if text.isidentifier() and text != "json" and text in namespace else text
    if args.logprobs is not None and not 0 <= args.logprobs <= MAX_TOP_LOGPROBS:
        raise UsageError(f"--logprobs takes 0 to {MAX_TOP_LOGPROBS} alternatives per token, not {args.logprobs}.")
    images = [namespace[i] if i.isidentifier() and i in namespace else i for i in args.images] if args.images else None
    busy_retries = args.busy_retries if args.busy_retries is not None else defaults.get("busy_retries")
    if busy_retries is not None and busy_retries < 0:
        raise UsageError("--busy-retries must be 0 or more.")
    timeout = args.timeout if args.timeout is not None else defaults.get("timeout")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(
            f"--timeout must be a positive number of seconds, not {timeout:g} (for a long wait, e.g. --timeout 3600)."
        )
    keep_alive = args.keep_alive if args.keep_alive is not None else (defaults.get("keep_alive") or None)
    if keep_alive is not None:
        try:
            normalize_keep_alive(keep_alive)
        except InvalidRequestError as exc:
            raise UsageError(str(exc)) from None
    models = _models(args.model, namespace) or [defaults.get("model") or ""]
    for name in models:
        if models.count(name) > 1:
            raise UsageError(f"-m {name} is given twice: each model is compared once.")
    if args.expect is not None and each is None:
        raise UsageError("--expect only applies with --each DATA (it scores every row's answer).")
    if args.cache is not None and len(models) > 1 and each is None:
        raise UsageError("--cache keeps single answers and --each batches, not comparisons: drop it or one -m.")
    if args.to_cell and len(models) > 1:
        raise UsageError("--to-cell puts one answer into a new cell: give one -m with it, not several.")
    kwargs: dict[str, Any] = {
        "prompt": prompt,
        "model": models[0],
        "suffix": args.suffix,
        "images": images,
        "format": fmt,
        "options": options or None,
        "system": args.system,
        "template": args.template,
        "stream": not args.no_stream,
        "raw": args.raw,
        "keep_alive": keep_alive,
        "think": _think(args.think),
        "truncate": args.truncate,
        "shift": args.shift,
        "logprobs": args.logprobs is not None,
        "top_logprobs": args.logprobs,
        "retries": args.retries,
        "schema_in_prompt": args.schema_in_prompt,
        "host": args.host or defaults.get("host") or None,
        "timeout": timeout,
        "busy_retries": busy_retries,
    }
    cache = args.cache if args.cache is not None else (defaults.get("cache") if each is not None else None)
    conversation = args.conversation or defaults.get("conversation") or "auto"
    if conversation == "messages" and not args.no_context and each is None:
        from ..engine.request import CHAT_CANNOT_CARRY

        refused = [flag for name, flag in CHAT_CANNOT_CARRY.items() if getattr(args, name)]
        if refused:
            raise UsageError(
                f"{' and '.join(refused)} cannot go with conversation 'messages' (/api/chat has no such field): "
                "drop it, or add --conversation context (or --no-context)."
            )
    return Call(
        kwargs=kwargs,
        thread=args.thread or "default",
        new=args.new,
        no_context=args.no_context or args.raw or each is not None,
        conversation=conversation,
        out=args.out,
        quiet=args.quiet,
        each=each,
        each_name=args.each,
        prompts=prompts,
        concurrency=args.concurrency if args.concurrency is not None else 2,
        cache=cache or None,
        to_cell=args.to_cell,
        models=models,
        expect=args.expect,
        host_origin="--host" if args.host else ("%config GenerateMagics.host" if defaults.get("host") else None),
    )


def _each(args: argparse.Namespace, template: str, namespace: Mapping[str, Any]) -> tuple[Any, list[str] | None]:
    """Check the --each options and fill the template for every item (nothing is sent yet)."""
    from ..batch import each

    if args.each is None:
        if args.concurrency is not None:
            raise UsageError("--concurrency only applies with --each VAR (a batch of prompts).")
        return None, None
    name = args.each.strip()
    if not name.isidentifier():
        raise UsageError(f"--each needs the name of a variable (a list, Series or DataFrame), not {name!r}.")
    if name not in namespace:
        raise UsageError(f"--each {name}: there is no variable {name!r} in the notebook.")
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be 1 or more.")
    if args.thread or args.new or args.conversation:
        raise UsageError("--each items never touch conversation threads: drop --thread/--new/--conversation.")
    if args.no_interpolate:
        raise UsageError("--each fills the cell as a template for every item: it cannot be used with --no-interpolate.")
    value = namespace[name]
    return value, each.prompts(template, value, namespace)
