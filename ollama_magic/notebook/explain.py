"""``%ollama explain``: the kernel's last error, explained for a learner by the default model.

The magics remember the last cell that failed (from IPython's ``post_run_cell`` event):
its code, the exception and the traceback's frames in the person's code (IPython's own
frames are left out: they explain nothing to a learner).  ``%ollama explain`` sends that
to the model in the thread ``explain``, so the other conversations are left alone and a
follow-up ``%%generate --thread explain`` can ask more.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any

import IPython

#: At most this much code and traceback is sent: a learner's cell, not a whole program.
MAX_CODE = 6000
MAX_TRACEBACK = 4000

_IPYTHON_DIR = os.path.dirname(IPython.__file__)

PROMPT = """\
A learner ran the code below in a Jupyter notebook and got an error. Explain, for someone \
learning Python, what the error means, which line caused it and why, and how to fix it. \
Be brief and kind; show the corrected code if it helps.

The code of the cell:
```python
{code}
```

The error:
```
{error}
```
"""


@dataclass(frozen=True)
class LastError:
    """A failed cell: its code and its error as text."""

    code: str
    error: str


def _clip(text: str, limit: int, keep_end: bool) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if keep_end else text[:limit] + "…"


def describe(exc: BaseException) -> str:
    """The traceback of ``exc`` from the person's code on (IPython's frames dropped)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_IPYTHON_DIR)]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines).rstrip()


def from_run(result: Any) -> LastError | None:
    """The error of an IPython ExecutionResult, or None when the cell did not fail."""
    exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    if exc is None:
        return None
    code = getattr(getattr(result, "info", None), "raw_cell", "") or ""
    return LastError(code=code, error=describe(exc))


def prompt(error: LastError) -> str:
    """What is sent to the model."""
    return PROMPT.format(
        code=_clip(error.code.strip("\n"), MAX_CODE, keep_end=False),
        error=_clip(error.error, MAX_TRACEBACK, keep_end=True),
    )
