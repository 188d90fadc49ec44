"""See and keep a conversation: ``%ollama history``, ``%ollama save`` and ``%ollama load``.

A thread's turns (conversation.py) are text, so a conversation can be shown, written to a
JSON file and read back in another kernel (after a restart, or by a student handed the
file).  The file holds what the conversation is made of and nothing about where it ran:
the turns (prompt, images, system, answer, thinking, model, the request settings of each
turn), the head's model and context, and the branch points of the cells that ran in it
(cell id -> the turn it started after).  Headers, API keys and hosts are not part of a
turn, so they cannot get into a file.

A file is read as untrusted: anything that is not exactly our layout is refused with one
line, and its text is shown only through the terminal sanitiser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.conversation import TURN_SETTINGS, ConversationStore, ThreadState, Turn, turns_of
from ..engine.errors import OllamaMagicError
from ..engine.terminal import one_line
from ..server.management import table

#: What the file says it is; a file without it is not one of ours.
KIND = "ollama_magic conversation"
VERSION = 1
#: The longest first line shown per turn by ``%ollama history``.
FIRST_LINE = 60


class TranscriptError(OllamaMagicError):
    """A conversation file that cannot be written or is not one of ours."""


def _first_line(text: str) -> str:
    line = one_line(text.strip().splitlines()[0] if text.strip() else "")
    return line if len(line) <= FIRST_LINE else line[: FIRST_LINE - 1] + "…"


def history_text(state: ThreadState, name: str) -> str:
    """``%ollama history``: who said what (first line) and the tokens of each turn."""
    turns = state.history()
    if not turns:
        return f"Thread {one_line(name)} has no turns yet."
    rows: list[list[Any]] = []
    system = None
    for number, turn in enumerate(turns, 1):
        if turn.system is not None and turn.system != system:
            rows.append(["", "system", _first_line(turn.system), "-"])
            system = turn.system
        images = f" [+{len(turn.images)} image(s)]" if turn.images else ""
        rows.append([number, "user", _first_line(turn.prompt) + images, _count(turn.prompt_tokens)])
        rows.append(["", one_line(turn.model), _first_line(turn.answer), _count(turn.answer_tokens)])
    return table(["TURN", "WHO", "FIRST LINE", "TOKENS"], rows)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


# -- save ---------------------------------------------------------------------------------


def _turn_dict(turn: Turn, ids: dict[int, int]) -> dict[str, Any]:
    return {
        "id": ids[id(turn)],
        "previous": ids[id(turn.previous)] if turn.previous is not None else None,
        "prompt": turn.prompt,
        "images": list(turn.images),
        "system": turn.system,
        "answer": turn.answer,
        "thinking": turn.thinking,
        "model": turn.model,
        "settings": {k: v for k, v in turn.settings.items() if k in TURN_SETTINGS},
        "prompt_tokens": turn.prompt_tokens,
        "answer_tokens": turn.answer_tokens,
        "via": turn.via,
        "cell_id": turn.cell_id,
    }


def _state_dict(state: ThreadState, ids: dict[int, int]) -> dict[str, Any]:
    return {
        "turn": ids[id(state.last)] if state.last is not None else None,
        "model": state.model,
        "turns": state.turns,
        "context": list(state.context) if state.context else None,
    }


def dump(store: ConversationStore, name: str) -> dict[str, Any]:
    """The JSON-ready form of thread ``name`` (its head, branch points and every turn they reach)."""
    thread = store.threads.get(name)
    if thread is None:
        raise TranscriptError(f"There is no thread {one_line(name)!r} to save (see %ollama threads).")
    states = [thread.head, *thread.cell_starts.values()]
    ordered: list[Turn] = []
    ids: dict[int, int] = {}
    for state in states:
        for turn in state.history():
            if id(turn) not in ids:
                ids[id(turn)] = len(ordered)
                ordered.append(turn)
    return {
        "kind": KIND,
        "version": VERSION,
        "thread": name,
        "head": _state_dict(thread.head, ids),
        "cells": {cell: _state_dict(state, ids) for cell, state in thread.cell_starts.items()},
        "turns": [_turn_dict(turn, ids) for turn in ordered],
    }


def save(store: ConversationStore, name: str, path: str | os.PathLike[str]) -> Path:
    """Write thread ``name`` to ``path`` as JSON (replacing the file only once it is complete)."""
    body = dump(store, name)
    target = Path(path).expanduser()
    temporary = target.with_name(target.name + ".part")
    try:
        temporary.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise TranscriptError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    return target


# -- load ---------------------------------------------------------------------------------


def _refuse(path: Path, why: str) -> TranscriptError:
    return TranscriptError(f"{path} is not a conversation saved by %ollama save ({why}); nothing was loaded.")


def _optional(value: Any, kind: type) -> Any:
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{value!r} is not a {kind.__name__}")
    return value


def _count_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a token count is not a whole number")
    return value


def _turns(raw: Any) -> list[Turn]:
    if not isinstance(raw, list):
        raise ValueError("no list of turns")
    turns: list[Turn] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or item.get("id") != index:
            raise ValueError(f"turn {index} is not in order")
        previous = item.get("previous")
        if previous is not None and (not isinstance(previous, int) or not 0 <= previous < index):
            raise ValueError(f"turn {index} follows no earlier turn")
        images = item.get("images") or []
        settings = item.get("settings") or {}
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise ValueError(f"turn {index} has images that are not base64 text")
        if not isinstance(settings, Mapping):
            raise ValueError(f"turn {index} has settings that are not an object")
        via = item.get("via", "generate")
        if via not in ("generate", "chat"):
            raise ValueError(f"turn {index} was sent neither to /api/generate nor to /api/chat")
        if not all(isinstance(item.get(k), str) for k in ("prompt", "answer", "model")):
            raise ValueError(f"turn {index} lacks its prompt, answer or model")
        turns.append(
            Turn(
                prompt=item["prompt"],
                answer=item["answer"],
                model=item["model"],
                images=tuple(images),
                system=_optional(item.get("system"), str),
                thinking=_optional(item.get("thinking"), str),
                settings={k: v for k, v in settings.items() if k in TURN_SETTINGS},
                prompt_tokens=_count_or_none(item.get("prompt_tokens")),
                answer_tokens=_count_or_none(item.get("answer_tokens")),
                via=via,
                cell_id=_optional(item.get("cell_id"), str),
                previous=turns[previous] if previous is not None else None,
            )
        )
    return turns


def _state(raw: Any, turns: list[Turn]) -> ThreadState:
    if not isinstance(raw, Mapping):
        raise ValueError("a conversation point is not an object")
    turn = raw.get("turn")
    if turn is not None and (not isinstance(turn, int) or isinstance(turn, bool) or not 0 <= turn < len(turns)):
        raise ValueError("a conversation point names no turn")
    context = raw.get("context")
    if context is not None and not (isinstance(context, list) and all(type(t) is int for t in context)):
        raise ValueError("a context is not a list of token ids")
    last = turns[turn] if turn is not None else None
    count = len(turns_of(last))
    return ThreadState(_optional(raw.get("model"), str), tuple(context) if context else None, count, last)


def load(store: ConversationStore, path: str | os.PathLike[str], name: str | None = None) -> tuple[str, ThreadState]:
    """Read a file written by :func:`save` into thread ``name`` (default: the name it was saved
    under), replacing that thread; returns the name and its head."""
    source = Path(path).expanduser()
    try:
        body = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TranscriptError(f"There is no file {source}.") from None
    except OSError as exc:
        raise TranscriptError(f"Cannot read {source}: {exc.strerror or exc}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _refuse(source, "it is not JSON text") from None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise _refuse(source, "it does not say it is one")
    if body.get("version") != VERSION:
        raise _refuse(source, f"it is version {body.get('version')!r}; this ollama_magic reads version {VERSION}")
    try:
        turns = _turns(body.get("turns"))
        head = _state(body.get("head"), turns)
        cells = body.get("cells") or {}
        if not isinstance(cells, Mapping):
            raise ValueError("the branch points are not an object")
        starts = {str(cell): _state(state, turns) for cell, state in cells.items()}
        saved_name = body.get("thread")
        if not isinstance(saved_name, str) or not saved_name.strip():
            raise ValueError("it names no thread")
    except ValueError as exc:
        raise _refuse(source, str(exc)) from None
    target = name or saved_name
    store.restore(target, head, starts)
    return target, head
