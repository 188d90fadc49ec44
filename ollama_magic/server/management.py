"""Plain-text tables for ``%ollama``: models, loaded models, details, threads.

Formatting only; the data comes from :class:`~ollama_magic.engine.client.OllamaClient` and the
conversation store, so these functions are easy to test with literal dicts.

What the server sends is untrusted and may be malformed: every value is read
defensively (a ``null`` name, a size that is text, a list where a dict belongs gives a
``?`` or ``-`` in its cell, never a traceback) and shown through
:func:`~ollama_magic.engine.terminal.one_line`, so no escape sequence reaches the terminal and
no line break shifts the table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..engine.conversation import ConversationStore
from ..engine.terminal import one_line, printable


def _text(value: Any, missing: str = "-") -> str:
    """A server value for a table cell: one printable line; ``missing`` for None or empty."""
    if value is None or value == "":
        return missing
    return one_line(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def human_size(size: int | float | None) -> str:
    """Bytes as Ollama's CLI shows them.

    >>> human_size(520_000), human_size(4_661_224_676), human_size(None)
    ('520 KB', '4.7 GB', '-')
    """
    size = _number(size)
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces.

    >>> print(table(["A", "BB"], [["x", 1], ["yyy", 22]]))
    A    BB
    x    1
    yyy  22
    """
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
        for row in [list(headers), *text_rows]
    ]
    return "\n".join(lines)


def _day(timestamp: Any) -> str:
    return _text(timestamp)[:19].replace("T", " ")


def model_names(models: list[Any]) -> list[str]:
    """The names in a ``/api/tags`` answer, sorted; entries without a usable name are left out."""
    return sorted(one_line(m["name"]) for m in models if isinstance(m, dict) and isinstance(m.get("name"), str))


def models_table(models: list[Any]) -> str:
    entries = [_dict(m) for m in models]
    if not entries:
        return "No models on this server: pull one with 'ollama pull NAME' (e.g. llama3.2)."
    rows = []
    for m in sorted(entries, key=lambda m: _text(m.get("name"), "?")):
        details = _dict(m.get("details"))
        rows.append(
            [
                _text(m.get("name"), "?"),
                human_size(m.get("size")),
                _text(details.get("family")),
                _text(details.get("parameter_size")),
                _text(details.get("quantization_level")),
                _day(m.get("modified_at")),
            ]
        )
    return table(["NAME", "SIZE", "FAMILY", "PARAMETERS", "QUANTIZATION", "MODIFIED"], rows)


def loaded_table(models: list[Any]) -> str:
    entries = [_dict(m) for m in models]
    if not entries:
        return "No model is loaded in memory now."
    rows = [
        [
            _text(m.get("name"), "?"),
            human_size(m.get("size")),
            human_size(m.get("size_vram")),
            _day(m.get("expires_at")),
        ]
        for m in entries
    ]
    return table(["NAME", "SIZE", "VRAM", "UNTIL"], rows)


def show_text(name: str, info: Any) -> str:
    info = _dict(info)
    details = _dict(info.get("details"))
    capabilities = info.get("capabilities")
    if isinstance(capabilities, list):
        capabilities = ", ".join(_text(c) for c in capabilities)
    lines = [f"Model {one_line(name)}"]
    for label, value in (
        ("family", details.get("family")),
        ("parameters", details.get("parameter_size")),
        ("quantization", details.get("quantization_level")),
        ("format", details.get("format")),
        ("capabilities", capabilities),
        ("modified", _day(info.get("modified_at")) if info.get("modified_at") else None),
    ):
        if value:
            lines.append(f"  {label:<13}{_text(value)}")
    if info.get("parameters"):
        lines.append("  parameters:")
        lines.extend(f"    {line}" for line in printable(str(info["parameters"])).splitlines())
    if info.get("system"):
        lines.append(f"  system:      {_text(info['system'])}")
    if info.get("template"):
        lines.append("  template:")
        lines.extend(f"    {line}" for line in printable(str(info["template"])).splitlines())
    return "\n".join(lines)


def threads_table(store: ConversationStore) -> str:
    if not store.threads:
        return "No conversation threads yet."
    rows = []
    for name, thread in store.threads.items():
        head = thread.head
        rows.append([one_line(name), _text(head.model), head.turns, len(head.context) if head.context else 0])
    return table(["THREAD", "MODEL", "TURNS", "CONTEXT TOKENS"], rows)
