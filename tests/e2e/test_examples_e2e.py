"""Every notebook in examples/ runs from top to bottom against the real Ollama, so none can rot.

A notebook added to examples/ is picked up here without editing this file.  The notebooks
name no model: they use OLLAMA_MAGIC_MODEL, which is set here to the test model, as
Binder's ``start`` sets it to the demo model.  Any error output fails, except in a cell
tagged ``raises-exception`` (a cell that shows what a failure looks like, e.g. a pull on a
machine without internet), whose error must then be one line with no traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import SHORT
from .support import HEY
from .test_notebook_e2e import REPO, install_kernelspec

EXAMPLES = sorted((REPO / "examples").glob("*.ipynb"))


def _texts(outputs: list[Any]) -> str:
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.append(str(output.data.get("text/plain", "")))
    return "".join(parts)


def test_every_example_is_found() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "quickstart.ipynb",
        "conversations.ipynb",
        "structured_output.ipynb",
        "images.ipynb",
        "teaching.ipynb",
        "python_api.ipynb",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_no_example_names_a_model(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    defined: set[str] = set()  # variables the notebook assigns (e.g. models read from the server)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # -m only with a variable the notebook filled itself (comparing models needs -m),
        # never with a model's name.
        for match in re.finditer(r"(?:^|[ \t])(?:-m|--model)[ \t]+(\S+)", cell.source):
            assert match.group(1) in defined, cell.source
        assert "GenerateMagics.model" not in cell.source, cell.source
        assert not re.search(r"\btiny\b", cell.source), cell.source
        defined |= set(re.findall(r"^(\w+)\s*=", cell.source, re.MULTILINE))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_notebook_runs_without_errors(path: Path, real_host: str, tmp_path: Path) -> None:
    install_kernelspec(tmp_path / "jupyter")
    nb = nbformat.read(path, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OLLAMA_HOST", real_host)
        mp.setenv("OLLAMA_MAGIC_MODEL", SHORT)
        mp.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        NotebookClient(
            nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            for error in errors:  # a failure shown on purpose: one line, as a person should see it
                assert len(error.traceback) == 1, error.traceback
        else:
            assert errors == [], (cell.source, errors)
        text = _texts(cell.outputs)
        assert "Traceback" not in text, (cell.source, text)
        # The test model gives its whole, sensible-looking answer, never a fragment such as
        # "w!" (what it says when a prompt ends mid-way through "Hey now!").
        rest = text.replace(HEY, "")
        assert not re.search(r"(\bw!|\bnow!|y now)", rest), (cell.source, text)
    for cell in code:
        if cell.source.startswith(("%%generate", "%generate")) and "raises-exception" not in cell.metadata.get(
            "tags", []
        ):
            # every answer is a saved display output with its footer and the whole answer
            html = "".join(o.data.get("text/html", "") for o in cell.outputs if o.output_type == "display_data")
            assert "ollama-magic-footer" in html, cell.source
            assert HEY in _texts(cell.outputs) or HEY in html or "{" in html, cell.source
