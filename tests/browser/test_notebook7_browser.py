"""What works in Jupyter Notebook 7 today, kept so (real Notebook 7, real Ollama, Chromium).

A notebook saved by an old tool (nbformat 4.4: no cell ids) is opened: ``%%generate``
streams its answer and footer into the cell, a second cell continues the thread, and
running that second cell again branches from where it first started (the thread has 2
turns, not 3): Notebook 7, like JupyterLab, gives every cell an id while it is open.
Screenshot: ``SHOTS/notebook7-old-notebook.png``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..conftest import SHORT
from .jupyterlab_page import CELLS, SHOTS, cell, run_all_cells, wait_all_executed, wait_footer
from .test_keyboard_browser import open_in

pytest.importorskip("notebook", reason="the Notebook 7 tests need `pip install notebook`")


def turns(page: Any) -> str:
    """The TURNS column of ``%ollama threads`` (cell 3) for thread ``default``."""
    text = cell(page, 3).locator(".jp-OutputArea-output").first.inner_text()
    row = next(line for line in text.splitlines() if line.startswith("default"))
    return row.split()[2]


def test_an_old_notebook_streams_continues_and_branches_in_notebook7(page: Any, notebook7: Any, real_host: str) -> None:
    sources = [
        f"%load_ext ollama_magic\n%env OLLAMA_MAGIC_MODEL={SHORT}",
        "%%generate\nhi",
        "%%generate\nhi",
        "%ollama threads",
    ]
    old = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in sources
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    (notebook7.root / "old.ipynb").write_text(json.dumps(old), encoding="utf-8")
    open_in(page, "notebook7", notebook7, "old.ipynb")
    run_all_cells(page)
    wait_all_executed(page)
    for index in (1, 2):
        footer = wait_footer(page, index)
        assert SHORT in footer.inner_text() and "tok/s" in footer.inner_text()
    assert "Hey now!" in cell(page, 1).locator(".jp-OutputArea-output").first.inner_text()
    assert turns(page) == "2"

    # Run the second answer's cell again (select it, Ctrl+Enter), then the threads cell.
    for index in (2, 3):
        cell(page, index).locator(".jp-InputPrompt").click()
        before = cell(page, index).locator(".jp-InputPrompt").inner_text()
        page.keyboard.press("Control+Enter")
        page.wait_for_function(
            "([cells, i, before]) => { const p = document.querySelectorAll(cells)[i]"
            ".querySelector('.jp-InputPrompt').innerText.trim();"
            " return /^\\[\\d+\\]:$/.test(p) && p !== before.trim(); }",
            arg=[CELLS, index, before],
            timeout=60_000,
        )
    wait_all_executed(page)
    assert turns(page) == "2"  # branched from where the cell first started, not a third turn
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "notebook7-old-notebook.png"))
