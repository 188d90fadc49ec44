"""The command line: ``ollama-magic generate --prompt TEXT`` (also
``python -m ollama_magic.examples.generate_example``, the name users of the Ollama toolkit know).

Built on :func:`~ollama_magic.engine.generation.generate`, like the magics.  The answer goes to
stdout as it streams (so ``> answer.txt`` keeps only the answer) and the statistics line
to stderr.  Every failure is one line on stderr and a non-zero exit status; Ctrl-C exits
quietly with 130, as shells expect.  Model text is cleaned of terminal escape sequences
(:mod:`.terminal`) before it is written.

Fallback: when the model is not on the server (404), or the server fails to load it, the
prompt is answered once by a fallback model (``--fallback-model``, else the server's first
model), announced on stderr; ``--no-fallback`` makes that a one-line error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .display.render import footer_text
from .engine.client import OllamaClient
from .engine.connection import Connection
from .engine.errors import GenerationInterrupted, ModelNotFoundError, OllamaMagicError, OllamaResponseError
from .engine.generation import generate
from .engine.request import MODEL_ENV, resolve_model
from .engine.result import GenerationResult
from .engine.terminal import TerminalText, one_line

PROG = "ollama-magic generate"

#: Words of Ollama's error when a model exists but cannot be loaded (a broken or too-large
#: model, an unsupported architecture, not enough memory).
_LOAD_FAILURES = ("failed to load", "unable to load", "error loading model", "runner process", "out of memory")


class CliError(Exception):
    """A failure to report as one line, with the exit status to end with."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def generate_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The options, as the Ollama toolkit's generate example has them (plus --fallback-model, --host)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Ask an Ollama model one question: the answer streams to stdout, the statistics go to stderr.",
    )
    parser.add_argument("--prompt", required=True, help="the question or instruction")
    parser.add_argument("--model", help=f"the model (default: the {MODEL_ENV} environment variable)")
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the answer as it is generated (default), or all at once with --no-stream",
    )
    parser.add_argument("--temperature", type=float, help="sampling temperature, e.g. 0.7 (0: most predictable)")
    parser.add_argument(
        "--num-predict", type=int, metavar="N", help="the most tokens to generate (-1: no limit, the default)"
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="fail when the model is missing or cannot load, instead of answering with another model",
    )
    parser.add_argument("--fallback-model", help="the model to answer with instead (default: the server's first)")
    parser.add_argument("--host", help="the Ollama server (default: OLLAMA_HOST, else 127.0.0.1:11434)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each part of the answer")
    return parser


def _is_load_failure(exc: OllamaResponseError) -> bool:
    text = str(exc).lower()
    return exc.status_code >= 500 and any(word in text for word in _LOAD_FAILURES)


def _fallback_model(args: argparse.Namespace, client: OllamaClient, failed: str) -> str:
    if args.fallback_model:
        return str(args.fallback_model)
    names = [str(m.get("name") or "") for m in client.tags()]
    names = [n for n in names if n and n not in (failed, f"{failed}:latest")]
    if not names:
        raise CliError(f"model {failed!r} is not usable and the server at {client.base_url} has no other model")
    return names[0]


def run_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Answer ``args.prompt``; return the exit status.  Raises CliError for one-line failures."""
    client = Connection(host=args.host, timeout=args.timeout).client()
    model = resolve_model(args.model)
    if not model:
        if args.no_fallback:
            raise CliError(f"no model given: pass --model NAME or set {MODEL_ENV}", 2)
        model = _fallback_model(args, client, "")
        err.write(f"no model given (--model or {MODEL_ENV}); answering with {one_line(model)}\n")
    options = {
        key: value
        for key, value in (("temperature", args.temperature), ("num_predict", args.num_predict))
        if value is not None
    } or None
    cleaner = TerminalText()
    wrote = {"any": False}

    def on_chunk(text: str, thinking: str) -> None:
        if text:
            out.write(cleaner.feed(text))
            out.flush()
            wrote["any"] = True

    def ask(name: str) -> GenerationResult:
        return generate(
            args.prompt,
            name,
            options=options,
            stream=args.stream,
            host=args.host,
            timeout=args.timeout,
            client=client,
            on_chunk=on_chunk if args.stream else None,
            on_warning=lambda message: err.write(f"note: {one_line(message)}\n"),
        )

    try:
        result = ask(model)
    except OllamaResponseError as exc:
        missing = isinstance(exc, ModelNotFoundError) or exc.status_code == 404
        if not (missing or _is_load_failure(exc)) or args.no_fallback or wrote["any"]:
            raise
        fallback = _fallback_model(args, client, model)
        why = "not found" if missing else "failed to load"
        err.write(f"model {one_line(model)} {why}; answering with {one_line(fallback)}\n")
        err.flush()
        result = ask(fallback)
    if args.stream:
        out.write(cleaner.flush())
    else:
        out.write(one_line_keep_newlines(result.text))
    out.write("\n")
    out.flush()
    err.write(one_line(footer_text(result)) + "\n")
    return 0


def one_line_keep_newlines(text: str) -> str:
    """Model text for the terminal: escape sequences and control characters removed, lines kept."""
    cleaner = TerminalText()
    return cleaner.feed(text) + cleaner.flush()


def generate_main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``ollama-magic generate`` and of the examples module; returns the exit status."""
    args = generate_parser(prog).parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        return run_generate(args, out, err)
    except (KeyboardInterrupt, GenerationInterrupted):
        out.write("\n")  # end the partial line; nothing else: Ctrl-C was what the person wanted
        out.flush()
        return 130
    except ModelNotFoundError as exc:
        err.write(f"{prog}: error: {one_line(exc)}\n")
        return 1
    except (OllamaMagicError, CliError) as exc:
        err.write(f"{prog}: error: {one_line(exc)}\n")
        return getattr(exc, "status", 1)


def main(argv: Sequence[str] | None = None) -> int:
    """``ollama-magic COMMAND ...``: today one command, ``generate``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ollama-magic generate --prompt TEXT [options]   (ollama-magic generate --help)")
        return 0 if argv else 2
    if argv[0] != "generate":
        print(f"ollama-magic: error: unknown command {argv[0]!r} (use: generate)", file=sys.stderr)
        return 2
    return generate_main(argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
