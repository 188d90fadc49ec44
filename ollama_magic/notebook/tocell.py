"""``--to-cell``: an answer's code, put into a new cell below for a person to read and run.

The first fenced code block of the complete answer (or the whole answer when it has
none) becomes the text of a new cell below, through IPython's ``set_next_input`` with
``replace=False``: Jupyter inserts the cell, nothing is executed, and the answer is still
shown above.  Fences are found by the same CommonMark parser that renders the answer, so
what counts as a code block is what the person sees as one.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_parser = MarkdownIt("commonmark")


def first_code_block(text: str) -> str | None:
    """The content of the first fenced code block in ``text``, or None.

    >>> first_code_block("Try this:\\n\\n```python\\nprint('hi')\\n```\\nand that.")
    "print('hi')\\n"
    >>> first_code_block("No code here.") is None
    True
    """
    for token in _parser.parse(text):
        if token.type == "fence":
            return token.content
    return None


def cell_text(answer: str) -> str:
    """What goes into the new cell: the first fenced code block, else the whole answer."""
    code = first_code_block(answer)
    return (code if code is not None else answer).rstrip("\n")
