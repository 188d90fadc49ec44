"""Text from a server made safe to write to a terminal.

Everything a server sends is untrusted: an answer, its thinking, a model name, an error
text.  Written raw to a terminal, ``\\x1b]52;c;...\\x07`` sets the clipboard, ``\\x1b[2J``
clears the screen, other sequences retitle the window, redraw what was shown, or make
some terminals answer back as if typed.  So what reaches a terminal keeps only printable
characters, newline and tab:

- escape sequences are removed whole: CSI (``ESC [``), the string sequences OSC, DCS,
  SOS, PM and APC (``ESC ]``, ``ESC P``, ``ESC X``, ``ESC ^``, ``ESC _``, up to BEL or
  ST) and the short ``ESC x`` forms, in their 7-bit and 8-bit (C1) spellings;
- every other C0 and C1 control character is removed, and so is DEL.  That includes a
  lone carriage return: ``rm -rf ~\\rls -l`` would otherwise show only ``ls -l``, hiding
  what the text really says; with it removed, everything the model wrote stays visible
  (``\\r\\n`` becomes ``\\n``).

:class:`TerminalText` does the same for a text that arrives in pieces, holding back the
end of a piece that may be the start of a sequence, so a sequence split across two
streamed chunks is removed too.
"""

from __future__ import annotations

import re

#: The longest string sequence (OSC, DCS...) removed whole; a longer one loses its
#: introducer (so it does nothing) and its contents show as text.  Bounding it keeps
#: the cleaning linear in the text's length whatever the text is.
MAX_SEQUENCE = 4096

_SEQUENCE = re.compile(
    r"""
      \x1b\[ [0-?]* [\ -/]* [@-~]                               # CSI
    | \x9b [0-?]* [\ -/]* [@-~]                                 # CSI, 8-bit
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])                   # OSC DCS SOS PM APC ...
      [^\x07\x1b\x9c]{0,MAX} (?:\x07|\x1b\\|\x9c)               # ... up to BEL or ST
    | \x1b [\ -/]* [0-~]                                        # other ESC sequences
    | [\x00-\x08\x0b-\x1f\x7f-\x9f]                             # any other control
    """.replace("MAX", str(MAX_SEQUENCE)),
    re.VERBOSE,
)

#: The end of a text that may be the first part of a sequence completed by what follows.
_PARTIAL = re.compile(
    r"""
    (?: \x1b\[ [0-?]* [\ -/]*
      | \x9b [0-?]* [\ -/]*
      | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) [^\x07\x1b\x9c]{0,MAX} \x1b?
      | \x1b [\ -/]*
    ) \Z
    """.replace("MAX", str(MAX_SEQUENCE)),
    re.VERBOSE,
)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    r"""``text`` without escape sequences or control characters (newline and tab stay).

    >>> printable("Hey\x1b[2J now\x1b]52;c;aGk=\x07!\r\n")
    'Hey now!\n'
    """
    if not _CONTROL.search(text):
        return text  # the usual case: nothing to remove, no copy
    return _SEQUENCE.sub("", text)


def one_line(value: object) -> str:
    r"""A server value for one line of text (a table cell, a model name): printable, no line breaks.

    >>> one_line("tiny\n\x1b[31mred"), one_line(None)
    ('tiny red', 'None')
    """
    return " ".join(printable(str(value)).split("\n")).replace("\t", " ")


class TerminalText:
    """:func:`printable` for a text that arrives in pieces.

    ``feed`` returns what can be written now; the end of a piece that may begin an
    escape sequence is held until the next piece shows what it is (at most
    :data:`MAX_SEQUENCE` characters).  ``flush`` gives what is held once the text ends.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece if self._held else piece
        if not _CONTROL.search(text):
            self._held = ""
            return text
        partial = _PARTIAL.search(text, max(0, len(text) - MAX_SEQUENCE - 2))
        if partial is not None:
            self._held = text[partial.start() :]
            text = text[: partial.start()]
        else:
            self._held = ""
        return _SEQUENCE.sub("", text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return printable(text)
