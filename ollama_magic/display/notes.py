"""Notes that are not errors, drawn as a calm line where a notebook would paint stderr red.

A note ("this server returned no token probabilities", "Ollama will not enforce
'multipleOf'", a busy server's retry) tells the user something true about a request that
still worked.  JupyterLab, Notebook 7, Voilà and VS Code draw a kernel's stderr on a red
background, the look of a failure; so in a notebook kernel a note is an output of its own:
``text/plain`` ("Note: ...") for every frontend and a plain ``text/html`` line in the
text's own colour, marked ``role="note"`` for screen readers.  In a terminal (IPython, the
CLI) stderr is not red and keeps the answer on stdout clean for a pipe: notes stay there.
"""

from __future__ import annotations

import html
import sys
from typing import Any

from ..engine.terminal import printable
from .render import notebook_display

#: The text's own colour (no grey that could fail contrast in a dark theme), a thin
#: neutral bar on the left so it reads as an aside, never red.
_NOTE_LINE_STYLE = "border-left:3px solid currentColor;padding:0.1em 0 0.1em 0.6em;margin:0.2em 0;font-size:0.9em"


class Note:
    """One note as an output: ``text/plain`` and an inline-styled ``text/html`` line.

    >>> Note("this server returned no token probabilities.")._repr_mimebundle_()["text/plain"]
    'Note: this server returned no token probabilities.'
    """

    def __init__(self, message: str, label: str = "Note") -> None:
        self.message = message
        self.label = label

    def plain(self) -> str:
        return printable(f"{self.label}: {self.message}" if self.label else self.message)

    def html(self) -> str:
        label = f"<strong>{html.escape(self.label)}:</strong> " if self.label else ""
        return (
            f'<div class="ollama-magic-note-line" role="note" style="{_NOTE_LINE_STYLE}">'
            f"{label}{html.escape(self.message)}</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.plain(), "text/html": self.html()}


def show_note(message: str, label: str = "Note") -> None:
    """A calm output in a notebook kernel; one line on stderr in a terminal.

    ``label`` starts the line ("Note: ..."); empty for a line that says what it is
    ("server busy: retry 1 of 6 in 0.5 s")."""
    display = notebook_display()
    note = Note(message, label)
    if display is not None:
        display(note)
    else:
        print(note.plain(), file=sys.stderr, flush=True)
