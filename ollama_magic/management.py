"""Plain-text tables for ``%ollama``: models, loaded models, details, threads.

Formatting only; the data comes from :class:`~ollama_magic.client.OllamaClient` and the
conversation store, so these functions are easy to test with literal dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .conversation import ConversationStore


def human_size(size: int | float | None) -> str:
    """Bytes as Ollama's CLI shows them.

    >>> human_size(520_000), human_size(4_661_224_676), human_size(None)
    ('520 KB', '4.7 GB', '-')
    """
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


def _day(timestamp: str | None) -> str:
    return (timestamp or "-")[:19].replace("T", " ")


def models_table(models: list[dict[str, Any]]) -> str:
    if not models:
        return "No models on this server: pull one with `ollama pull NAME` (e.g. llama3.2)."
    rows = []
    for m in sorted(models, key=lambda m: m.get("name", "")):
        details = m.get("details") or {}
        rows.append(
            [
                m.get("name", "?"),
                human_size(m.get("size")),
                details.get("family", "-"),
                details.get("parameter_size", "-"),
                details.get("quantization_level", "-"),
                _day(m.get("modified_at")),
            ]
        )
    return table(["NAME", "SIZE", "FAMILY", "PARAMETERS", "QUANTIZATION", "MODIFIED"], rows)


def loaded_table(models: list[dict[str, Any]]) -> str:
    if not models:
        return "No model is loaded in memory now."
    rows = [
        [m.get("name", "?"), human_size(m.get("size")), human_size(m.get("size_vram")), _day(m.get("expires_at"))]
        for m in models
    ]
    return table(["NAME", "SIZE", "VRAM", "UNTIL"], rows)


def show_text(name: str, info: dict[str, Any]) -> str:
    details = info.get("details") or {}
    lines = [f"Model {name}"]
    for label, value in (
        ("family", details.get("family")),
        ("parameters", details.get("parameter_size")),
        ("quantization", details.get("quantization_level")),
        ("format", details.get("format")),
        ("capabilities", ", ".join(info.get("capabilities") or []) or None),
        ("modified", _day(info.get("modified_at")) if info.get("modified_at") else None),
    ):
        if value:
            lines.append(f"  {label:<13}{value}")
    if info.get("parameters"):
        lines.append("  parameters:")
        lines.extend(f"    {line}" for line in str(info["parameters"]).splitlines())
    if info.get("system"):
        lines.append(f"  system:      {info['system']}")
    if info.get("template"):
        lines.append("  template:")
        lines.extend(f"    {line}" for line in str(info["template"]).splitlines())
    return "\n".join(lines)


def threads_table(store: ConversationStore) -> str:
    if not store.threads:
        return "No conversation threads yet."
    rows = []
    for name, thread in store.threads.items():
        head = thread.head
        rows.append([name, head.model or "-", head.turns, len(head.context) if head.context else 0])
    return table(["THREAD", "MODEL", "TURNS", "CONTEXT TOKENS"], rows)
