"""The examples check (scripts/run_examples.py): what it rejects in an executed notebook is
what a reader would notice, and nothing a notebook shows on purpose."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from nbformat.v4 import new_code_cell, new_notebook, new_output

from ollama_magic.display.render import Answer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_examples.py"
spec = importlib.util.spec_from_file_location("run_examples", SCRIPT)
assert spec and spec.loader
checker = importlib.util.module_from_spec(spec)
sys.modules["run_examples"] = checker
spec.loader.exec_module(checker)


def shown(text: str, footer: str, errors: list[str] | None = None) -> Any:
    """The display output %%generate leaves in a saved notebook, drawn by the package itself."""
    return new_output("display_data", data=Answer(text, footer=footer, errors=errors)._repr_mimebundle_())


def cell(source: str, *outputs: Any, tags: list[str] | None = None) -> Any:
    made = new_code_cell(source, outputs=list(outputs))
    if tags:
        made.metadata["tags"] = tags
    return made


def problems(*cells: Any, model: str = "smollm2") -> list[str]:
    return checker.problems(new_notebook(cells=list(cells)), model)


def test_a_real_answer_passes() -> None:
    assert (
        problems(cell("%%generate\nWhy?", shown("Because of Rayleigh scattering.", "smollm2:latest · 12 tokens"))) == []
    )


def test_the_test_models_answer_from_a_real_model_fails() -> None:
    found = problems(cell("%%generate\nWhy?", shown("Hey now!", "smollm2:latest · 9 tokens")))
    assert any("answered the test model's 'Hey now!'" in f for f in found), found


def test_a_notebook_run_against_the_test_model_fails() -> None:
    found = problems(cell("%%generate\nWhy?", shown("Hey now!", "tiny:latest · 9 tokens")))
    assert found == ["no answer came from a real model (the model was smollm2)"]


def test_the_test_model_beside_a_real_one_in_a_comparison_passes() -> None:
    both = new_output(
        "display_data",
        data={
            "text/html": '<div class="ollama-magic-comparison">'
            + Answer("Light scatters.", footer="smollm2:latest · 3 tokens").html()
            + Answer("Hey now!", footer="tiny:latest · 9 tokens").html()
            + "</div>"
        },
    )
    assert problems(cell("%%generate -m models\nWhy?", both)) == []


def test_an_empty_answer_fails() -> None:
    found = problems(cell("%%generate\nWhy?", shown("", "smollm2:latest · 0 tokens")))
    assert any("smollm2:latest gave an empty answer" in f for f in found), found


def test_a_broken_schema_fails_unless_the_cell_shows_it_on_purpose() -> None:
    broken = shown('{"age": 31}', "smollm2:latest · 8 tokens", errors=["$.age: 31 is not a multiple of 10"])
    assert any("Schema check failed" in f for f in problems(cell("%%generate --format s\nx", broken)))
    assert problems(cell("%%generate --format s\nx", broken, tags=["may-break-schema"])) == []


def test_errors_fail_but_a_one_line_error_shown_on_purpose_passes() -> None:
    error = new_output("error", ename="ValueError", evalue="no", traceback=["ValueError: no"])
    assert any("error ValueError: no" in f for f in problems(cell("1/0", error)))
    assert problems(cell("1/0", error, tags=["raises-exception"])) == []
    long = new_output("error", ename="ValueError", evalue="no", traceback=["Traceback ...", "ValueError: no"])
    assert any("not one line" in f for f in problems(cell("1/0", long, tags=["raises-exception"])))


def test_a_generate_cell_without_an_answer_fails() -> None:
    found = problems(cell("%%generate\nWhy?"))
    assert any("no answer with its footer" in f for f in found), found


def batch_table(*answers: str, failed: int = 0) -> Any:
    """The final table of a --each cell, drawn by the package from real results."""
    from ollama_magic.batch.results import BatchResults
    from ollama_magic.batch.view import BatchTable
    from ollama_magic.engine.result import GenerationResult

    results = []
    for text in answers:
        r = GenerationResult(model="smollm2", text=text, complete=True)
        results.append(r)
    for _ in range(failed):
        results.append(GenerationResult(model="smollm2", text="{}", complete=True, errors=["$.label is required"]))
    table = BatchTable(BatchResults(results), [f"prompt {i}" for i in range(len(results))])
    return new_output("display_data", data={"text/html": table.html()})


def test_a_batch_table_counts_as_the_notebooks_models_answers() -> None:
    assert problems(cell("%%generate --each df\n{x}", batch_table("positive", "negative"))) == []
    found = problems(cell("%%generate --each df\n{x}", batch_table("Hey now!", "Hey now!")))
    assert any("smollm2 answered the test model's 'Hey now!'" in f for f in found), found


def test_a_batch_with_failed_items_fails() -> None:
    found = problems(cell("%%generate --each df --format s\n{x}", batch_table("positive", failed=1)))
    assert any("items 1 failed (1 × the answer does not match the schema)" in f for f in found), found


def test_an_evaluation_counts_its_models_and_their_failures() -> None:
    page = (
        '<table class="ollama-magic-eval-summary"><thead><tr><th>model</th><th>answered</th><th>failed</th>'
        "</tr></thead><tbody><tr><td>smollm2</td><td>12</td><td>0</td></tr><tr><td>tiny</td><td>12</td>"
        "<td>{failed}</td></tr></tbody></table>"
    )
    grid = new_output("display_data", data={"text/html": page.format(failed=0), "text/plain": "Hey now!"})
    table = new_output("execute_result", data={"text/plain": "row  smollm2  tiny\n0  positive  Hey now!"})
    # tiny's "Hey now!" beside a real model, and in a table printed from the results: fine
    assert (
        problems(cell("%%generate --each df -m models --expect label\n{x}", grid), cell("ev.disagreements()", table))
        == []
    )
    broken = new_output("display_data", data={"text/html": page.format(failed=3)})
    found = problems(cell("%%generate --each df -m models --expect label\n{x}", broken))
    assert found == ["code cell 1 ('%%generate --each df -m models --expect label'): tiny failed 3 of its rows"]
