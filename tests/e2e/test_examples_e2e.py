"""The example notebooks run from top to bottom against the real Ollama, so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .test_notebook_e2e import REPO, install_kernelspec

EXAMPLES = sorted((REPO / "examples").glob("*.ipynb"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_notebook_runs_without_errors(path: Path, real_host: str, tmp_path: Path) -> None:
    install_kernelspec(tmp_path / "jupyter")
    nb = nbformat.read(path, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OLLAMA_HOST", real_host)
        mp.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        NotebookClient(nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    generated = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%generate")]
    assert generated
    for cell in generated:  # every answer is a saved display output with its footer
        html = "".join(o.data.get("text/html", "") for o in cell.outputs if o.output_type == "display_data")
        assert "ollama-magic-footer" in html, cell.source
