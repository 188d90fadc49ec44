"""The ``%ollama`` subcommands: one small function each, registered with its usage line.

``%ollama`` grows with every feature (models, threads, the panel, waiting for a server,
pulling with progress, the cache...).  A chain of ``if command == ...`` in the magic would
grow with it; instead each subcommand is a function here, registered by
:func:`subcommand` with the usage and one-line summary that ``%ollama help`` (and the
error for an unknown command) prints.  The magic itself only calls :func:`run`.

A subcommand receives the magics object (for its settings, its conversation store and a
client built from them) and the words after its name, split like a shell would.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from IPython.core.error import UsageError

from ..engine.client import OllamaClient
from ..engine.connection import Connection
from ..engine.conversation import ConversationStore
from ..engine.request import resolve_model
from ..server import management


class Session(Protocol):
    """What a subcommand may use of the magics (``GenerateMagics`` is one): the settings, the
    threads, the kernel's last error and a client.  Written out here, so this module does
    not import the magics that call it (arrows point one way: magics -> subcommands)."""

    shell: Any
    model: str
    cache: str
    conversation: str
    conversations: ConversationStore
    last_error: Any

    def connection(self) -> Connection: ...

    def client(self) -> OllamaClient: ...

    def generate(self, line: str, cell: str | None = None) -> Any: ...


Handler = Callable[[Session, list[str]], Any]


@dataclass(frozen=True)
class Subcommand:
    """One ``%ollama NAME ...`` command: what it is called, how to use it, what it does."""

    name: str
    usage: str
    summary: str
    handler: Handler


COMMANDS: dict[str, Subcommand] = {}


def subcommand(usage: str, summary: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as ``%ollama`` + the first word of ``usage``."""

    def register(handler: Handler) -> Handler:
        name = usage.split(maxsplit=1)[0]
        COMMANDS[name] = Subcommand(name, usage, summary, handler)
        return handler

    return register


def help_text() -> str:
    """Every subcommand with its usage and summary, as ``%ollama help`` prints it."""
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = ["Usage: %ollama COMMAND [ARGS]"]
    lines.extend(f"  %ollama {c.usage:<{width}}  {c.summary}" for c in COMMANDS.values())
    return "\n".join(lines)


def run(magics: Session, line: str) -> Any:
    """Dispatch one ``%ollama`` line to its subcommand; usage mistakes are one-line UsageErrors."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"Cannot read the %ollama line ({exc}): check its quotes.") from None
    if not words:
        print(help_text())
        return None
    name, args = words[0], words[1:]
    command = COMMANDS.get(name)
    if command is None:
        names = ", ".join(COMMANDS)
        raise UsageError(f"Unknown %ollama command {name!r}: use one of {names} (see %ollama help).")
    return command.handler(magics, args)


def expect(args: list[str], usage: str, *, at_least: int = 0, at_most: int = 0) -> list[str]:
    """Check the number of arguments a subcommand got, or say how to use it."""
    if not at_least <= len(args) <= at_most:
        raise UsageError(f"Usage: %ollama {usage}")
    return args


# -- the commands, in the order %ollama help lists them -------------------------------------


@subcommand("list", "the models on the server")
def _list(magics: Session, args: list[str]) -> None:
    expect(args, "list")
    print(management.models_table(magics.client().tags()))


@subcommand("ps", "the models loaded in memory now")
def _ps(magics: Session, args: list[str]) -> None:
    expect(args, "ps")
    print(management.loaded_table(magics.client().ps()))


@subcommand("show MODEL", "a model's details: family, size, capabilities, template")
def _show(magics: Session, args: list[str]) -> None:
    (name,) = expect(args, "show MODEL", at_least=1, at_most=1)
    print(management.show_text(name, magics.client().show(name)))


@subcommand("pull [--insecure] MODEL", "download a model onto the server, with a progress bar")
def _pull(magics: Session, args: list[str]) -> None:
    from ..server import pull

    insecure = "--insecure" in args
    rest = [a for a in args if a != "--insecure"]
    if any(a.startswith("-") for a in rest):
        raise UsageError("Usage: %ollama pull [--insecure] MODEL")
    (name,) = expect(rest, "pull [--insecure] MODEL", at_least=1, at_most=1)
    pull.pull(name, insecure=insecure, client=magics.client())


@subcommand("version", "this package's version and the server's")
def _version(magics: Session, args: list[str]) -> None:
    from ..version import __version__

    expect(args, "version")
    client = magics.client()
    print(f"ollama_magic {__version__}")
    print(f"Ollama server {management.one_line(client.version())} at {client.base_url}")


@subcommand("wait [SECONDS]", "wait until the server answers (default 120 s), e.g. as a notebook's first cell")
def _wait(magics: Session, args: list[str]) -> None:
    import time

    (given,) = expect(args, "wait [SECONDS]", at_most=1) or ["120"]
    try:
        seconds = float(given)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UsageError(f"Usage: %ollama wait [SECONDS] (a positive number of seconds, not {given!r})")
    client = magics.client()
    url = client.base_url
    line = StatusLine(magics)
    start = time.monotonic()
    try:
        version = client.wait_until_up(
            seconds, lambda elapsed, why: line.show(f"waiting for Ollama at {url}… {elapsed:.0f} s ({why})")
        )
    except Exception:
        line.show(f"No answer from Ollama at {url} after {time.monotonic() - start:.0f} s")
        line.end()
        raise
    line.show(f"Ollama {version} is up at {url} (waited {time.monotonic() - start:.0f} s)")
    line.end()


class StatusLine:
    """One line of text updated in place: a display handle in a notebook, ``\r`` in a terminal."""

    def __init__(self, magics: Session) -> None:
        self._kernel = getattr(magics.shell, "kernel", None) is not None
        self._handle: Any = None
        self._width = 0

    def show(self, text: str) -> None:
        from IPython.display import display

        if not self._kernel:
            print(f"\r{text:<{self._width}}", end="", flush=True)
            self._width = max(self._width, len(text))
        elif self._handle is None:
            self._handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self._handle.update({"text/plain": text}, raw=True)

    def end(self) -> None:
        if not self._kernel:
            print(flush=True)


@subcommand("threads", "the conversation threads: model, turns, context length")
def _threads(magics: Session, args: list[str]) -> None:
    expect(args, "threads")
    print(management.threads_table(magics.conversations))


@subcommand("reset [THREAD]", "forget one conversation thread, or all of them")
def _reset(magics: Session, args: list[str]) -> None:
    rest = expect(args, "reset [THREAD]", at_most=1)
    forgotten = magics.conversations.reset(rest[0] if rest else None)
    if rest:  # and the thread's per-model conversations of compared models, "THREAD [MODEL]"
        for name in [n for n in magics.conversations.threads if n.startswith(f"{rest[0]} [")]:
            forgotten += magics.conversations.reset(name)
    print(f"Forgot thread(s): {', '.join(forgotten)}" if forgotten else "No such thread.")


@subcommand("history [THREAD]", "a thread's turns: who, the first line, tokens")
def _history(magics: Session, args: list[str]) -> None:
    from .transcript import history_text

    rest = expect(args, "history [THREAD]", at_most=1)
    name = rest[0] if rest else "default"
    threads = magics.conversations.threads
    names = [name] if name in threads else sorted(n for n in threads if n.startswith(f"{name} ["))
    if not names:
        print(f"There is no thread {name!r} (see %ollama threads).")
    for shown in names:
        if len(names) > 1:
            print(f"{shown}:")
        print(history_text(threads[shown].head, shown))


@subcommand("save [THREAD] PATH", "write a thread to a JSON file (no headers or keys), for %ollama load")
def _save(magics: Session, args: list[str]) -> None:
    from .transcript import TranscriptError, save

    rest = expect(args, "save [THREAD] PATH", at_least=1, at_most=2)
    name, path = (rest[0], rest[1]) if len(rest) == 2 else ("default", rest[0])
    try:
        target = save(magics.conversations, name, path)
    except TranscriptError as exc:
        raise UsageError(str(exc)) from None
    turns = magics.conversations.threads[name].head.turns
    print(f"Saved thread {name!r} ({turns} turn(s)) to {target}.")


@subcommand("load PATH [THREAD]", "restore a thread saved by %ollama save (replacing one of that name)")
def _load(magics: Session, args: list[str]) -> None:
    from .transcript import TranscriptError, load

    rest = expect(args, "load PATH [THREAD]", at_least=1, at_most=2)
    try:
        name, head = load(magics.conversations, rest[0], rest[1] if len(rest) == 2 else None)
    except TranscriptError as exc:
        raise UsageError(str(exc)) from None
    print(f"Loaded thread {name!r}: {head.turns} turn(s); the next %%generate --thread {name} continues it.")


@subcommand("ui", "a point-and-click panel that shares the threads with %%generate")
def _ui(magics: Session, args: list[str]) -> None:
    from IPython.display import display

    from ..widgets.panel import GeneratePanel

    expect(args, "ui")
    if getattr(magics.shell, "kernel", None) is None:
        print("The panel needs a notebook (JupyterLab, Jupyter Notebook, VS Code); in a terminal, use %generate.")
        return
    display(
        GeneratePanel(
            model=resolve_model(magics.model),
            conversations=magics.conversations,
            conversation=magics.conversation,
            connection=magics.connection(),
        )
    )


@subcommand("cache [info | clear] [PATH]", "the answer cache: what it holds, or empty it")
def _cache(magics: Session, args: list[str]) -> None:
    from ..batch.cache import ResultCache, info_text

    usage = "cache [info | clear] [PATH]"
    rest = expect(args, usage, at_most=2)
    action = "info"
    if rest and rest[0] in ("info", "clear"):
        action, rest = rest[0], rest[1:]
    if len(rest) > 1:
        raise UsageError(f"Usage: %ollama {usage}")
    path = rest[0] if rest else magics.cache
    if not path:
        raise UsageError(
            "Which cache? Give its path (%ollama cache info answers.sqlite) "
            "or set %config GenerateMagics.cache = 'answers.sqlite'."
        )
    if action == "info" and not Path(path).expanduser().exists():
        print(f"No cache at {path} yet: it is created by the first --cache run.")
        return
    with ResultCache(path) as cache:
        if action == "clear":
            count = cache.clear()
            print(f"Cleared {count} answer(s) from {cache.path}.")
            return
        print(info_text(cache.info()))


@subcommand("explain [MODEL]", "the last error of this kernel explained, by the default model (thread explain)")
def _explain(magics: Session, args: list[str]) -> None:
    from .explain import prompt

    rest = expect(args, "explain [MODEL]", at_most=1)
    if magics.last_error is None:
        print("There is no error to explain: no cell has failed in this kernel since ollama_magic was loaded.")
        return
    model = f"-m {shlex.quote(rest[0])} " if rest else ""
    magics.generate(f"{model}--thread explain --no-interpolate", prompt(magics.last_error))


@subcommand("help", "this list")
def _help(magics: Session, args: list[str]) -> None:
    print(help_text())
