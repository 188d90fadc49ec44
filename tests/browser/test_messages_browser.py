"""A conversation another model continues, in JupyterLab: the note under the footer.

``-m tiny`` then ``-m tiny-long`` in one thread (the real server): the second cell's answer
continues the first through ``/api/chat``, and the note "tiny-long continued tiny's
conversation ..." is a line of its own under the footer, in the footer's quiet style.
Screenshots go to /tmp/browser-shots/ (``OLLAMA_BROWSER_SHOTS``).
"""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import LONG, SHORT
from .jupyterlab_page import SHOTS, cell, open_notebook, run_all_cells, wait_all_executed, wait_footer, write_notebook

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")


def test_another_model_continuing_the_thread_is_said_under_the_footer(page: Any, lab: Any, real_host: str) -> None:
    write_notebook(
        lab.root / "continued.ipynb",
        "%load_ext ollama_magic",
        f"%%generate -m {SHORT}\nhi",
        f"%%generate -m {LONG} --num-predict 8\nhi again",
    )
    open_notebook(page, lab.notebook_url("continued.ipynb"))
    run_all_cells(page)
    wait_footer(page, 1)
    footer = wait_footer(page, 2)
    wait_all_executed(page)
    note = cell(page, 2).locator(".ollama-magic-note")
    expected = f"{LONG} continued {SHORT}'s conversation (from its messages: token ids do not carry across models)"
    assert note.inner_text() == expected
    assert "continued" not in footer.inner_text() and footer.inner_text().startswith(f"{LONG} · ")
    footer_box, note_box = footer.bounding_box(), note.bounding_box()
    assert footer_box is not None and note_box is not None
    assert note_box["y"] >= footer_box["y"] + footer_box["height"] - 1  # a line of its own, under the footer
    SHOTS.mkdir(parents=True, exist_ok=True)
    cell(page, 2).screenshot(path=str(SHOTS / "messages-continued-note.png"))
