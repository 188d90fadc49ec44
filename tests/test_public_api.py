"""The public API, pinned: what a user's code and notebooks rely on must not change by accident.

A user imports names from ``ollama_magic``, calls them with keywords, types ``%%generate``
options and ``%ollama`` subcommands, and sets ``%config GenerateMagics.*``.  The package's
inside may be rearranged freely; none of these may move.  The snapshot in
``tests/data/public_api.json`` is what they are today.  It is read from the user's side:
the top-level names and the magics as IPython registered them, never an internal module
path, so a restructure cannot change the snapshot by itself.

When a change to the public API is intended, write the snapshot anew and let the diff be
reviewed with the code: ``python -m tests.test_public_api --write``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "data" / "public_api.json"


def _own_classes(cls: type) -> list[type]:
    """The class and the package's own bases: where its members may be defined today."""
    return [c for c in cls.__mro__ if c.__module__.split(".")[0] == "ollama_magic"]


def _members(cls: type) -> dict[str, str]:
    """A public class's members a user can reach: methods with signatures, properties, fields.

    Inherited members count as the class's own, so moving a method into a base class (or
    out of one) inside the package is no change to the API; renaming or removing it is.
    """
    members: dict[str, str] = {}
    for owner in reversed(_own_classes(cls)):
        for name, value in vars(owner).items():
            if name.startswith("_") and name not in {"__init__", "_repr_mimebundle_", "_repr_html_"}:
                continue
            if isinstance(value, property):
                members[name] = "property"
            elif isinstance(value, (staticmethod, classmethod)):
                members[name] = f"{type(value).__name__}{inspect.signature(value.__func__)}"
            elif inspect.isfunction(value):
                members[name] = f"def{inspect.signature(value)}"
        fields = getattr(owner, "__dataclass_fields__", None)
        if fields:
            members["(fields)"] = ", ".join(fields)
    return dict(sorted(members.items()))


def _bases(cls: type, public: set[str]) -> list[str]:
    """The bases a user can rely on (``except OllamaMagicError``, ``isinstance(r, list)``)."""
    return [
        b.__name__ for b in cls.__mro__[1:] if b is not object and (b.__module__ == "builtins" or b.__name__ in public)
    ]


def _names() -> dict[str, Any]:
    import ollama_magic

    names: dict[str, Any] = {}
    for name in sorted(ollama_magic.__all__):
        value = getattr(ollama_magic, name)
        if inspect.ismodule(value):
            names[name] = {
                "module": {
                    n: str(inspect.signature(f))
                    for n, f in sorted(vars(value).items())
                    if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == value.__name__
                }
            }
        elif inspect.isclass(value):
            names[name] = {"class": _bases(value, set(ollama_magic.__all__)), **_members(value)}
        elif callable(value):
            names[name] = {"function": str(inspect.signature(value))}
        else:
            names[name] = {"value": type(value).__name__}
    return names


def _parser(magic: Any) -> dict[str, Any]:
    """Every option of a magic's argument parser: its spellings, its value and its default."""
    options: dict[str, Any] = {}
    for action in magic.parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        key = action.option_strings[0] if action.option_strings else action.dest
        options[key] = {
            "spellings": action.option_strings,
            "dest": action.dest,
            "nargs": action.nargs,
            "takes_value": action.nargs != 0,
            "choices": list(action.choices) if action.choices else None,
            "default": repr(action.default),
        }
    return options


def _magics() -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ollama_magic")
    manager = shell.magics_manager
    ours = manager.registry["GenerateMagics"]
    line = sorted(n for n, f in manager.magics["line"].items() if getattr(f, "__self__", None) is ours)
    cell = sorted(n for n, f in manager.magics["cell"].items() if getattr(f, "__self__", None) is ours)
    settings = {
        name: {"type": type(trait).__name__, "default": repr(trait.default_value)}
        for name, trait in sorted(type(ours).class_traits(config=True).items())
        if name not in {"config", "parent", "log"}
    }
    return {
        "line magics": line,
        "cell magics": cell,
        "%%generate options": _parser(manager.magics["cell"]["generate"]),
        "%config GenerateMagics": settings,
        "%ollama subcommands": _subcommands(ours),
    }


def _subcommands(magics: Any) -> list[str]:
    """The usage line of every ``%ollama`` subcommand, as ``%ollama help`` prints it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        magics.ollama("help")
    return [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]


def snapshot() -> dict[str, Any]:
    """The public API as a user meets it, in a form that diffs well."""
    return {"ollama_magic": _names(), "magics": _magics()}


def test_the_public_api_is_as_pinned() -> None:
    pinned = json.loads(SNAPSHOT.read_text())
    now = json.loads(json.dumps(snapshot()))
    for part in ("ollama_magic", "magics"):
        for name in sorted(set(pinned[part]) | set(now[part])):
            assert now[part].get(name) == pinned[part].get(name), (
                f"the public API changed at {part}.{name}; if that is intended, write the snapshot "
                "anew with `python -m tests.test_public_api --write` and review the diff"
            )


def test_the_snapshot_covers_what_users_touch() -> None:
    pinned = json.loads(SNAPSHOT.read_text())
    api = pinned["ollama_magic"]
    for name in ("generate", "compare", "generate_many", "evaluate"):
        assert "function" in api[name], name
    magics = pinned["magics"]
    assert magics["cell magics"] == ["generate"] and "ollama" in magics["line magics"]
    assert {"-m", "--each", "--format", "--thread"} <= set(magics["%%generate options"])
    assert {"model", "host", "headers", "busy_retries", "conversation"} <= set(magics["%config GenerateMagics"])
    assert any(line.lstrip().startswith("%ollama pull") for line in magics["%ollama subcommands"])


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_public_api --write")
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
