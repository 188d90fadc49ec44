"""What a person sees of an evaluation in JupyterLab: ``%%generate --each reviews -m alpha -m beta
--expect label``.

The fake server answers slowly (so the grid is seen filling in) with scripted answers per
model: ``alpha`` is always right, ``beta`` always says positive, fails one row and once
answers with hostile HTML and a long text.  While it runs: a progress line per model and a
grid with pending cells; at the end: the grid (right / wrong shaded, the long answer
shortened, whole on hover and on a click), the summary table and the chart.  Then the same
output in a notebook someone else saved (untrusted, so sanitized by JupyterLab).
Screenshots: /tmp/browser-shots/evaluation-*.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from .conftest import scripted_server
from .jupyterlab_page import (
    SHOTS,
    cell,
    open_notebook,
    output,
    run_all_cells,
    wait_all_executed,
    write_notebook,
)

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytest.importorskip("jupyterlab", reason="the browser tests need `pip install jupyterlab`")

HOSTILE = '<img src=x onerror="window.__pwned=1"> ' + "and a very long answer that goes on " * 4


@pytest.fixture
def scripted() -> Iterator[str]:
    from werkzeug.wrappers import Request, Response

    def respond(request: Request) -> Response:
        body = json.loads(request.data or b"{}")
        model, prompt = body.get("model", ""), body.get("prompt", "")
        row = int(prompt.split("#", 1)[1].split(":", 1)[0])
        time.sleep(0.3)
        if model == "beta" and row == 2:
            return Response(json.dumps({"error": "out of memory"}), status=500, mimetype="application/json")
        if model == "alpha":
            answer = "negative" if row % 3 == 0 else "positive"
        else:
            answer = HOSTILE if row == 1 else "positive"
        speed = 50_000_000 if model == "alpha" else 120_000_000
        lines = [
            {"model": model, "response": answer, "done": False},
            {"model": model, "response": "", "done": True, "done_reason": "stop", "eval_count": 5,
             "eval_duration": speed, "total_duration": 300_000_000},
        ]  # fmt: skip
        return Response("".join(json.dumps(x) + "\n" for x in lines), mimetype="application/x-ndjson")

    with scripted_server("/api/generate", respond) as host:
        yield host


def shot(locator: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SHOTS / f"{name}.png"))


def test_the_grid_fills_in_then_the_summary_and_the_chart(page: Any, lab: Any, scripted: str) -> None:
    rows = [{"text": f"#{i}: review {i}", "label": "negative" if i % 3 == 0 else "positive"} for i in range(12)]
    write_notebook(
        lab.root / "evaluation.ipynb",
        "%load_ext ollama_magic",
        f"import pandas as pd\nreviews = pd.DataFrame({rows!r})",
        f"%%generate --each reviews -m alpha -m beta --expect label --host {scripted} --concurrency 2 -o ev\n{{text}}",
    )
    open_notebook(page, lab.notebook_url("evaluation.ipynb"))
    run_all_cells(page)
    view = output(page, 2)
    view.locator(".ollama-magic-eval-grid").wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelectorAll('.ollama-magic-eval-answer').length >= 2"
        " && document.querySelectorAll('.ollama-magic-eval-pending').length > 0",
        timeout=30_000,
    )
    lines = view.locator(".ollama-magic-eval-progress").all_inner_texts()
    assert [line.split("\n")[0].strip() for line in lines] == ["alpha", "beta"]
    assert all(" / 12" in line for line in lines)
    shot(cell(page, 2), "evaluation-running")

    view.locator(".ollama-magic-eval-summary").wait_for(timeout=90_000)
    wait_all_executed(page)
    shot(cell(page, 2), "evaluation-done")
    summary = view.locator(".ollama-magic-eval-summary").inner_text()
    alpha, beta = summary.split("\n")[1:3]
    assert alpha.split("\t")[:4] == ["alpha", "12", "0", "100%"]
    assert beta.split("\t")[:4] == ["beta", "11", "1", "50%"]  # 6 of 12 right; the failure counts as wrong
    grid = view.locator(".ollama-magic-eval-grid")
    assert grid.locator(".ollama-magic-eval-pending").count() == 0
    assert grid.locator(".ollama-magic-eval-failed").get_attribute("title") == "Ollama answered HTTP 500: out of memory"
    long_answer = grid.locator("td.ollama-magic-eval-answer", has=page.locator("details"))
    assert long_answer.count() == 1
    assert long_answer.get_attribute("title") == HOSTILE.strip()  # the whole answer on hover
    assert "<img src=x" in long_answer.inner_text()  # as text
    long_answer.locator("summary").click()
    assert "goes on and a very long answer" in long_answer.locator("details[open]").inner_text()
    shot(cell(page, 2), "evaluation-unfolded")
    chart = view.locator(".ollama-magic-eval-chart")
    assert chart.is_visible()
    bars = chart.locator(".ollama-magic-eval-bar")
    widths = [b["width"] for b in (bars.nth(i).bounding_box() for i in range(bars.count()))]
    assert len(widths) == 4  # accuracy and tokens/s for each model
    assert widths[1] == pytest.approx(widths[0] / 2, abs=1.5)  # beta's 50% is half alpha's 100%
    assert widths[3] == pytest.approx(widths[2] * 41.7 / 100, abs=1.5)  # tokens/s, scaled to the fastest
    assert chart.get_attribute("aria-label") == "alpha: accuracy 100%, 100.0 tok/s; beta: accuracy 50%, 41.7 tok/s"
    shot(chart, "evaluation-chart")
    assert page.evaluate("() => window.__pwned") is None
    assert view.locator("script, img, iframe, object, embed").count() == 0


def test_a_saved_evaluation_in_a_notebook_someone_else_saved(page: Any, lab: Any) -> None:
    """Untrusted: JupyterLab sanitizes the output; the grid keeps its shading and the chart its
    bars (styled ``<div>`` s, not an ``<svg>``, which the sanitizer would drop); nothing hostile comes back to life."""
    from ollama_magic.engine.result import GenerationResult, Stats
    from ollama_magic.evaluation.model import Tracker, contenders, parse_expect
    from ollama_magic.evaluation.view import EvaluationDisplay

    rows = [{"index": i, "text": f"review {i}", "label": "positive"} for i in range(4)]
    tracker = Tracker(contenders(["alpha", "beta"], ["prompt"]), rows, parse_expect("label"), ["positive"] * 4)
    for i in range(8):
        text = "positive" if i % 2 == 0 or i == 3 else HOSTILE
        tracker.record(i, GenerationResult(text=text, model="m", stats=Stats(eval_count=5, eval_duration=10**8)))
    from ollama_magic.evaluation.view import Evaluation

    bundle = EvaluationDisplay(Evaluation(rows, tracker))._repr_mimebundle_()
    path = write_notebook(lab.root / "shared-evaluation.ipynb", "%%generate --each reviews -m alpha -m beta\n{text}")
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, path)  # not signed: JupyterLab treats it as untrusted and sanitizes it

    page.goto(lab.notebook_url("shared-evaluation.ipynb"))
    view = output(page, 0)
    view.locator(".ollama-magic-eval-summary").wait_for(timeout=60_000)
    assert "jp-mod-trusted" not in str(view.get_attribute("class")).split()
    assert "100%" in view.locator(".ollama-magic-eval-summary").inner_text()
    assert view.locator(".ollama-magic-eval-answer.wrong").count() == 3
    shaded = view.locator(".ollama-magic-eval-answer.right").first.evaluate(
        "(el) => getComputedStyle(el).backgroundColor"
    )
    assert shaded not in ("rgba(0, 0, 0, 0)", "transparent")
    bars = view.locator(".ollama-magic-eval-chart .ollama-magic-eval-bar")
    widths = [b["width"] for b in (bars.nth(i).bounding_box() for i in range(bars.count()))]
    assert len(widths) == 4 and widths[1] == pytest.approx(widths[0] / 4, abs=1.5)  # 25% of 100%
    assert view.locator("script, img, iframe, object, embed, svg").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    shot(cell(page, 0), "evaluation-untrusted")
