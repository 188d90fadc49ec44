"""Sphinx directives that write the reference of the magics from the code itself.

``{ollama-generate-options}``, ``{ollama-subcommands}`` and ``{ollama-settings}`` read the
``%%generate`` argument parser, the ``%ollama`` subcommand table and the configurable
traitlets of ``GenerateMagics`` when the site is built, so an option or a setting added,
renamed or re-documented in the code shows here without anyone editing a page: the
reference cannot fall behind the package.
"""

from __future__ import annotations

import argparse
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def magics_sources() -> tuple[Any, dict[str, Any]]:
    """The two objects the reference is generated from: the magics class and the subcommands.

    The one place that knows where they live inside the package (internal modules: this is
    the line to change when they move).
    """
    # Internal module paths, here only: REPOINT these two lines when the package moves.
    from ollama_magic.notebook.magics import GenerateMagics
    from ollama_magic.notebook.subcommands import COMMANDS

    return GenerateMagics, COMMANDS


def _table(header: list[str], rows: list[list[nodes.Node | str]], widths: list[int]) -> nodes.table:
    """A docutils table; a cell is text (shown literally when it starts with ``` ` ```) or a node."""
    table = nodes.table(classes=["ollama-reference"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)

    def row(cells: list[nodes.Node | str]) -> nodes.row:
        out = nodes.row()
        for value in cells:
            entry = nodes.entry()
            if isinstance(value, nodes.Node):
                entry += value
            else:
                entry += nodes.paragraph(text=value)
            out += entry
        return out

    thead = nodes.thead()
    thead += row(list(header))
    group += thead
    tbody = nodes.tbody()
    for cells in rows:
        tbody += row(cells)
    group += tbody
    return table


def _code(text: str) -> nodes.paragraph:
    para = nodes.paragraph()
    para += nodes.literal(text=text)
    return para


def _flags(action: argparse.Action) -> str:
    """``-t, --temperature F`` as the option is typed."""
    metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else "")
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if action.nargs == "?":
        metavar = f"[{metavar}]"
    elif action.nargs in ("*", "+"):
        metavar = f"{metavar} ..."
    flags = ", ".join(action.option_strings)
    return f"{flags} {metavar}".strip()


class GenerateOptions(SphinxDirective):
    """Every option of ``%%generate`` / ``%generate``, with its help text, from the parser."""

    def run(self) -> list[nodes.Node]:
        magics, _ = magics_sources()
        parser: argparse.ArgumentParser = magics.generate.parser
        formatter = parser._get_formatter()
        rows: list[list[nodes.Node | str]] = []
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            help_text = formatter._expand_help(action) if action.help else ""
            rows.append([_code(_flags(action)), help_text])
        return [_table(["option", "what it does"], rows, [30, 70])]


class Subcommands(SphinxDirective):
    """Every ``%ollama`` subcommand, in the order ``%ollama help`` lists them."""

    def run(self) -> list[nodes.Node]:
        _, commands = magics_sources()
        rows: list[list[nodes.Node | str]] = [
            [_code(f"%ollama {command.usage}"), command.summary] for command in commands.values()
        ]
        return [_table(["command", "what it does"], rows, [35, 65])]


#: traitlets' own words for a type ("a unicode string"), as Python names it.
_KINDS = {
    "a unicode string": "str",
    "an int": "int",
    "a float": "float",
    "a boolean": "bool",
    "a dict": "dict",
    "a list": "list",
}


def _kind(trait: Any) -> str:
    """What a setting takes: ``str``, ``bool or str``, ``'auto', 'context' or 'messages'``."""
    values = getattr(trait, "values", None)
    if values:
        return ", ".join(repr(v) for v in values[:-1]) + f" or {values[-1]!r}"
    return " or ".join(_KINDS.get(part, part) for part in trait.info().split(" or "))


class Settings(SphinxDirective):
    """Every ``%config GenerateMagics.*`` setting: its type, default and help text."""

    def run(self) -> list[nodes.Node]:
        magics, _ = magics_sources()
        rows: list[list[nodes.Node | str]] = []
        for name, trait in sorted(magics.class_traits(config=True).items()):
            default = trait.default()
            rows.append(
                [
                    _code(f"GenerateMagics.{name}"),
                    _kind(trait),
                    _code(repr(default)),
                    trait.help,  # plain text: its %%generate is the cell magic's name
                ]
            )
        return [_table(["setting", "type", "default", "meaning"], rows, [25, 10, 15, 50])]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("ollama-generate-options", GenerateOptions)
    app.add_directive("ollama-subcommands", Subcommands)
    app.add_directive("ollama-settings", Settings)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
