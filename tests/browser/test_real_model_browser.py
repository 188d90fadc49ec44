"""What a person sees in JupyterLab with a real model (smollm2, SmolLM2-135M-Instruct) on the
real Ollama: a real answer streaming in, a real model beside the test model, a table of
classified reviews, and the panel.  Screenshots: ``SHOTS/real-*.png`` (the pictures of the
product doing its real job; the other browser tests use scripted or tiny models).
"""

from __future__ import annotations

import csv
from typing import Any

import pytest

from ..conftest import REVIEWS_CSV, SHORT
from .jupyterlab_page import CELLS, SHOTS, cell, open_notebook, output, run_all_cells, wait_all_executed, write_notebook

pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
pytestmark = pytest.mark.real_model

PANEL_SEL = f"{CELLS} .ollama-magic-panel"


def shot(locator: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SHOTS / f"{name}.png"))


def shot_while_streaming(page: Any, index: int, name: str, min_words: int = 45) -> None:
    """``SHOTS/NAME.png``: cell ``index`` while its answer is still streaming, if that moment is caught.

    The cursor ends the answer only while it streams and is gone for good once the answer is
    whole, so a cursor still there after the screenshot proves the picture shows an answer in
    the middle of streaming.  If the answer completes first (a fast machine, a short answer),
    there is simply no such picture: nothing here depends on timing the test does not control.
    """
    path = SHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    page.wait_for_function(
        "([cells, index, words]) => { const c = document.querySelectorAll(cells)[index];"
        " if (!c) return false; if (c.querySelector('.ollama-magic-footer')) return true;"
        " const answer = c.querySelector('.ollama-magic');"
        " return !!c.querySelector('.ollama-magic-cursor') && !!answer"
        " && answer.innerText.trim().split(/\\s+/).length >= words; }",
        arg=[CELLS, index, min_words],
        timeout=180_000,
    )
    cursor = cell(page, index).locator(".ollama-magic-cursor")
    if cursor.count() == 0:
        return
    shot(cell(page, index), name)
    if cursor.count() == 0:  # it completed while the picture was taken
        path.unlink(missing_ok=True)


def setup(real_model: str) -> str:
    return f"%load_ext ollama_magic\n%config GenerateMagics.model = {real_model!r}"


def test_a_real_answer_streams_in_with_its_footer(page: Any, lab: Any, real_model: str) -> None:
    write_notebook(
        lab.root / "real-answer.ipynb",
        setup(real_model),
        "%%generate -t 0 --seed 1 --num-predict 160\nWhy is the sky blue? Answer in two short paragraphs.",
    )
    open_notebook(page, lab.notebook_url("real-answer.ipynb"))
    run_all_cells(page)
    shot_while_streaming(page, 1, "real-answer-streaming")  # the README's picture
    footer = output(page, 1).locator(".ollama-magic-footer")
    footer.wait_for(timeout=180_000)
    answer = output(page, 1).locator(".ollama-magic > p")
    text = " ".join(answer.all_inner_texts())
    assert len(text.split()) >= 30 and "Hey now!" not in text, text
    assert footer.inner_text().startswith(real_model)
    shot(cell(page, 1), "real-answer")


def test_the_real_model_beside_the_test_model(page: Any, lab: Any, real_model: str) -> None:
    write_notebook(
        lab.root / "real-comparison.ipynb",
        setup(real_model),
        f"models = [{real_model!r}, {SHORT!r}]",
        "%%generate -m models -t 0 --num-predict 40 --no-context\nWhat is a rainbow?",
    )
    open_notebook(page, lab.notebook_url("real-comparison.ipynb"))
    run_all_cells(page)
    summary = output(page, 2).locator(".ollama-magic-summary")
    summary.wait_for(timeout=180_000)
    columns = output(page, 2).locator(".ollama-magic-column")
    assert columns.count() == 2
    real = columns.nth(0).inner_text()
    assert real_model in real and "Hey now!" not in real.split(real_model, 1)[1]
    assert "Hey now!" in columns.nth(1).inner_text()
    assert "fastest generation:" in summary.inner_text()
    shot(cell(page, 2), "real-comparison")


def test_reviews_classified_by_the_real_model_fill_a_table(page: Any, lab: Any, real_model: str) -> None:
    with REVIEWS_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))[:6]
    write_notebook(
        lab.root / "real-batch.ipynb",
        setup(real_model),
        "import pandas as pd\n"
        f"reviews = pd.DataFrame({rows!r})\n"
        'sentiment = {"type": "object", "properties": {"sentiment": {"type": "string", '
        '"enum": ["positive", "negative"]}}, "required": ["sentiment"]}',
        "%%generate --each reviews --format sentiment -t 0 --num-predict 30 -o out\n"
        "Is this review positive or negative?\n\nReview: {text}",
        "out[['text', 'label', 'sentiment']]",
    )
    open_notebook(page, lab.notebook_url("real-batch.ipynb"))
    run_all_cells(page)
    wait_all_executed(page, timeout_ms=240_000)
    table = output(page, 3)
    assert table.locator("table").count() == 1
    text = table.inner_text()
    assert "positive" in text and "negative" in text
    shot(cell(page, 2), "real-batch")
    shot(cell(page, 3), "real-batch-table")


def test_the_panel_answers_with_the_real_model(page: Any, lab: Any, real_model: str) -> None:
    write_notebook(lab.root / "real-panel.ipynb", setup(real_model), "%ollama ui")
    open_notebook(page, lab.notebook_url("real-panel.ipynb"))
    run_all_cells(page)
    wait_all_executed(page)
    panel = page.locator(PANEL_SEL)
    panel.wait_for(state="visible", timeout=30_000)
    panel.locator("textarea").fill("Give me three tips for learning to code.")
    panel.locator("button:has-text('Generate')").click()
    footer = panel.locator(f".ollama-panel-footer:has-text('{real_model}')").first
    footer.wait_for(timeout=180_000)
    answer = panel.locator(".ollama-panel-turn .ollama-panel-answer").first.inner_text()
    assert len(answer.split()) >= 20 and "Hey now!" not in answer, answer
    shot(cell(page, 1), "real-panel")
