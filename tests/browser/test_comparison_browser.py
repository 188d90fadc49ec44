"""What a person sees of a comparison and of the token-probability view, in JupyterLab.

- ``-m tiny-long -m tiny``: two columns side by side in a wide window, each with its
  footer, and the summary under them; in a narrow window the columns stack;
- in a notebook someone else saved (untrusted, so sanitized by JupyterLab) the columns
  still stand side by side and the tokens keep their shading; hovering a token names its
  alternatives, clicking it opens them; a token holding HTML is shown as text.

Screenshots go to /tmp/browser-shots/ (``OLLAMA_BROWSER_SHOTS``).
"""

from __future__ import annotations

import math
from typing import Any

import nbformat
import pytest

from ..conftest import LONG, SHORT
from .jupyterlab_page import SHOTS, cell, open_notebook, output, run_all_cells, wait_all_executed, write_notebook

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")


def shot(locator: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SHOTS / f"{name}.png"))


def boxes(locator: Any) -> list[dict[str, float]]:
    return [locator.nth(i).bounding_box() for i in range(locator.count())]


def side_by_side(columns: Any) -> bool:
    first, second = boxes(columns)[:2]
    return abs(first["y"] - second["y"]) < 2 and second["x"] >= first["x"] + first["width"]


def stacked(columns: Any) -> bool:
    first, second = boxes(columns)[:2]
    return second["y"] >= first["y"] + first["height"] and abs(first["x"] - second["x"]) < 2


def test_two_models_side_by_side_then_stacked_when_narrow(page: Any, lab: Any, real_host: str) -> None:
    write_notebook(
        lab.root / "compare.ipynb",
        "%load_ext ollama_magic",
        f"%%generate -m {LONG} -m {SHORT} --num-predict 40\nhi",
    )
    open_notebook(page, lab.notebook_url("compare.ipynb"))
    run_all_cells(page)
    summary = cell(page, 1).locator(".ollama-magic-summary")
    summary.wait_for(state="visible", timeout=120_000)
    wait_all_executed(page)
    answer = output(page, 1)
    columns = answer.locator(".ollama-magic-column")
    assert columns.count() == 2
    headers = answer.locator(".ollama-magic-column-model").all_inner_texts()
    assert headers == [LONG, SHORT]
    footers = answer.locator(".ollama-magic-footer").all_inner_texts()
    assert [f.split(" · ")[0] for f in footers] == [LONG, SHORT]
    assert f"{LONG}: first token " in summary.inner_text() and " tok/s, " in summary.inner_text()
    assert "Hey now! Hey now!" in columns.nth(0).inner_text() and "Hey now!" in columns.nth(1).inner_text()
    assert side_by_side(columns), boxes(columns)
    shot(cell(page, 1), "f-compare-wide")

    page.set_viewport_size({"width": 560, "height": 900})
    page.wait_for_function(
        "(el) => { const c = el.querySelectorAll('.ollama-magic-column');"
        " return c[1].getBoundingClientRect().top >= c[0].getBoundingClientRect().bottom; }",
        arg=answer.element_handle(),
        timeout=10_000,
    )
    assert stacked(columns), boxes(columns)
    shot(cell(page, 1), "f-compare-narrow")


def _saved_outputs() -> tuple[dict[str, Any], dict[str, Any]]:
    """A comparison and a token-probability view as a kernel would have saved them."""
    from ollama_magic.batch.comparison import ComparisonView, Event
    from ollama_magic.display.logprobs import TokenProbabilities
    from ollama_magic.engine.result import GenerationResult, Stats

    view = ComparisonView(["alpha", "beta"], footer=lambda model, r: f"{model} · 9 tokens · 31.0 tok/s")
    for model, text in (("alpha", "Paris is the capital of France."), ("beta", "The capital is **Paris**.")):
        duration = 290_000_000 if model == "alpha" else 450_000_000
        result = GenerationResult(text=text, model=model, stats=Stats(eval_count=9, eval_duration=duration))
        view.apply(Event("done", model, result=result, seconds=0.4 if model == "alpha" else 0.6))

    def entry(token: str, p: float, *alternatives: tuple[str, float]) -> dict[str, Any]:
        return {
            "token": token,
            "logprob": math.log(p),
            "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in alternatives],
        }

    tokens = TokenProbabilities(
        [
            entry("The", 0.92, ("The", 0.92), ("A", 0.05)),
            entry(" sky", 0.81, (" sky", 0.81), (" sea", 0.1)),
            entry(" is", 0.97, (" is", 0.97), (" was", 0.02)),
            entry(" blue", 0.35, (" grey", 0.4), (" blue", 0.35), (" <img src=x onerror=alert(1)>", 0.1)),
            entry(".", 0.88, (".", 0.88), ("!", 0.06)),
        ]
    )
    return view._repr_mimebundle_(), tokens._repr_mimebundle_()


def test_columns_and_probability_view_in_a_notebook_someone_else_saved(page: Any, lab: Any) -> None:
    comparison, probabilities = _saved_outputs()
    path = write_notebook(lab.root / "shared-compare.ipynb", "%%generate -m alpha -m beta\nCapital of France?", "#")
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data=comparison)]
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data=probabilities)]
    for c in nb.cells:
        c.execution_count = 1
    nbformat.write(nb, path)  # not signed: JupyterLab treats it as untrusted and sanitizes it

    page.goto(lab.notebook_url("shared-compare.ipynb"))
    columns = output(page, 0).locator(".ollama-magic-column")
    columns.first.wait_for(state="visible", timeout=60_000)
    assert "jp-mod-trusted" not in str(output(page, 0).get_attribute("class")).split()
    assert side_by_side(columns), boxes(columns)  # the inline flex layout survives the sanitizer
    assert output(page, 0).locator(".ollama-magic-summary").inner_text().startswith("fastest generation: alpha")
    shot(cell(page, 0), "g-compare-untrusted")

    view = output(page, 1)
    tokens = view.locator("summary")
    assert tokens.all_inner_texts() == ["The", " sky", " is", " blue", "."]
    colours = [t.evaluate("(el) => getComputedStyle(el).backgroundColor") for t in tokens.all()]
    assert all(c not in ("rgba(0, 0, 0, 0)", "transparent") for c in colours), colours
    assert colours[3] != colours[2]  # an unsure token is shaded differently from a sure one
    assert (
        tokens.nth(3).get_attribute("title")
        == "␣blue: 35%\n  ␣grey: 40%\n  ␣blue: 35%\n  ␣<img␣src=x␣onerror=alert(1)>: 10%"
    )
    assert view.locator("img, script").count() == 0
    last = tokens.nth(4).bounding_box()
    tokens.nth(3).click()
    # The alternatives float under their token: no other word moves, and the output does
    # not need a scrollbar to show them.
    assert tokens.nth(4).bounding_box() == last
    assert view.evaluate("(el) => el.scrollHeight <= el.clientHeight + 1"), view.evaluate(
        "(el) => [el.scrollHeight, el.clientHeight]"
    )
    opened = view.locator("details[open]")
    assert opened.count() == 1
    assert "␣grey 40%" in opened.inner_text() and "␣<img␣src=x␣onerror=alert(1)> 10%" in opened.inner_text()
    assert "least sure: ␣blue 35%" in view.inner_text()
    shot(cell(page, 1), "g-probabilities-untrusted")
