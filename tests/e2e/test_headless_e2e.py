"""Lessons run headless: every example notebook through papermill (``-p model``) and
``jupyter nbconvert --execute``, as a teacher's CI or a grading script would run them.

- the ``parameters`` cell takes the model (papermill injects ``model = ...`` after it);
- the saved notebook has one final output per answer (no stream of partial updates, no
  empty or transient outputs), no error but in a cell tagged ``raises-exception``;
- papermill's output renders with ``jupyter nbconvert --to html``, answers and footers in it.

A notebook saved by an old tool (nbformat 4.4, no cell ids) still keeps its thread when run
headless (nbclient sends no cell ids at all: each cell runs once there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import SHORT
from .support import HEY
from .test_notebook_e2e import REPO, install_kernelspec

EXAMPLES = sorted((REPO / "examples").glob("*.ipynb"))
# Each run takes 20-30 s on a busy 2-core machine, so CI runs papermill and nbconvert on the
# lessons that show what they must keep (a stream of answers, a thread across cells, the
# panel); test_examples_e2e runs every example through nbclient, the engine both use.
# OLLAMA_HEADLESS_ALL=1 runs every example through both.
HEADLESS = (
    EXAMPLES
    if os.environ.get("OLLAMA_HEADLESS_ALL")
    else [p for p in EXAMPLES if p.name in ("quickstart.ipynb", "conversations.ipynb", "classroom_app.ipynb")]
)
pytest.importorskip("papermill", reason="the headless tests need `pip install papermill`")


@pytest.fixture
def env(real_host: str, tmp_path: Path) -> dict[str, str]:
    """The environment of papermill/nbconvert and so of their kernels: the real server, this interpreter's kernel."""
    install_kernelspec(tmp_path / "jupyter")
    return {
        **os.environ,
        "OLLAMA_HOST": real_host,
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def check_saved(path: Path) -> nbformat.NotebookNode:
    """No error (but where one is shown on purpose); each answer saved once, final, with its footer."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" not in cell.metadata.get("tags", []):
            assert errors == [], (cell.source, errors)
        for output in cell.outputs:
            if output.output_type == "display_data":
                assert output.data, cell.source  # no empty (transient) output left behind
                assert "display_id" not in output.get("transient", {}), cell.source
        # (a comparison, a batch and --retries show one output per model, item or attempt)
        one_answer = not any(flag in cell.source for flag in (" -m ", "--each", "--retries"))
        if cell.source.startswith("%%generate") and one_answer:
            answers = [
                o
                for o in cell.outputs
                if o.output_type == "display_data" and 'class="ollama-magic"' in o.data.get("text/html", "")
            ]
            assert len(answers) == 1, (cell.source, [o.data.get("text/plain") for o in answers])
            html = answers[0].data["text/html"]
            assert "ollama-magic-footer" in html and "ollama-magic-cursor" not in html, cell.source
    return nb


def python_m(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` as a person would run it in a terminal, its output kept for the assertion."""
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=cwd, check=False, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("path", HEADLESS, ids=[p.name for p in HEADLESS])
def test_papermill_with_a_model_parameter_then_html(path: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / path.name
    run = python_m(
        *("papermill", str(path), str(out), "-p", "model", SHORT, "-k", "python3", "--cwd", str(tmp_path)),
        *("--execution-timeout", "120", "--no-progress-bar"),
        env={**env, "OLLAMA_MAGIC_MODEL": ""},  # the model comes from the parameter alone
    )
    assert run.returncode == 0, run.stderr[-3000:]
    nb = check_saved(out)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f'model = "{SHORT}"' in injected[0].source
    text = json.dumps(nb)
    if path.name != "classroom_app.ipynb":  # a panel answers only when clicked
        assert f"model: {SHORT}" in text or SHORT in text
    html = python_m(
        *("jupyter", "nbconvert", "--to", "html", str(out), "--output-dir", str(tmp_path / "html")),
        env=env,
        timeout=120,
    )
    assert html.returncode == 0, html.stderr[-3000:]
    page = (tmp_path / "html" / path.with_suffix(".html").name).read_text(encoding="utf-8")
    if any(c.source.startswith("%%generate") for c in nb.cells if c.cell_type == "code"):
        assert "ollama-magic-footer" in page


@pytest.mark.parametrize("path", [p for p in HEADLESS if p.name == "conversations.ipynb"], ids=lambda p: p.name)
def test_nbconvert_execute(path: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    run = python_m(
        *("jupyter", "nbconvert", "--to", "notebook", "--execute", str(path), "--output", str(out)),
        *("--ExecutePreprocessor.timeout=120", "--ExecutePreprocessor.kernel_name=python3"),
        env={**env, "OLLAMA_MAGIC_MODEL": SHORT},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    nb = check_saved(out)
    if path.name == "conversations.ipynb":
        assert HEY in json.dumps(nb)


def test_a_notebook_without_cell_ids_keeps_its_thread_headless(env: dict[str, str], tmp_path: Path) -> None:
    cells = [
        "%load_ext ollama_magic",
        "%%generate -o first\nMy name is Ada.",
        "%%generate -o second\nWhat is my name?",
        "print(first.thread, second.thread, len(second.request.get('context') or []) > 0)",
    ]
    old = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in cells
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    nb = nbformat.from_dict(old)
    assert all("id" not in c for c in nb.cells)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OLLAMA_HOST", "JUPYTER_PATH"):
            mp.setenv(name, env[name])
        mp.setenv("OLLAMA_MAGIC_MODEL", SHORT)
        NotebookClient(
            nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert printed.strip() == "default default True"  # the second answer continued the first
