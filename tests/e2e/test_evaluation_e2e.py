"""evaluate() and ``%%generate --each DATA -m A -m B --expect`` against the real Ollama, over
tests/data/reviews.csv (48 short reviews, 24 positive and 24 negative).

What can be asserted of real models: every row is answered by every model, every answer
satisfies the schema, ``tiny`` (which knows nothing) is at chance or below, and the real
small model ``smollm2`` is above chance on this easy two-label task (greedy decoding, so
the figure is the same at every run: 65% when written, 31 of 48; a bare string enum
schema instead of an object left it at chance, answering mostly one label).  The accuracy
per model is printed (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ollama_magic.evaluation.runner import evaluate
from ollama_magic.evaluation.view import Evaluation

from ..conftest import SHORT, run

REVIEWS = Path(__file__).resolve().parents[1] / "data" / "reviews.csv"
LABEL = {"type": "string", "enum": ["positive", "negative"]}
OBJECT = {"type": "object", "properties": {"sentiment": LABEL}, "required": ["sentiment"]}
PROMPT = "Is this review positive or negative?\n\nReview: {text}"
GREEDY = {"temperature": 0, "seed": 1, "num_predict": 48}


@pytest.fixture
def reviews() -> pd.DataFrame:
    frame = pd.read_csv(REVIEWS)
    assert len(frame) == 48 and sorted(frame.label.value_counts()) == [24, 24]
    return frame


def test_tiny_and_the_real_model_over_48_labelled_reviews(
    real_host: str, real_model: str, reviews: pd.DataFrame
) -> None:
    ev = evaluate(
        reviews,
        [SHORT, real_model],
        PROMPT,
        expect="label=sentiment",
        format=OBJECT,
        host=real_host,
        options=GREEDY,
        concurrency=2,
        progress=False,
    )
    print(f"\n{ev.summary.to_string()}")
    tiny, real = ev.summary_rows()
    assert (tiny["answered"], tiny["failed"], real["answered"], real["failed"]) == (48, 0, 48, 0)
    results = ev.results
    assert len(results) == 96 and set(results.status) == {"ok"}
    assert set(results.sentiment) <= {"positive", "negative"}  # the schema held (an invalid answer would fail)
    assert tiny["accuracy"] <= 0.5  # no better than a coin: tiny knows nothing of reviews
    assert real["accuracy"] > 0.5, ev.mistakes(real_model).to_string()
    assert 0.0 <= real["agreement"] <= 1.0 and real["agreement"] == tiny["agreement"]
    assert real["tokens"] > 0 and real["tokens_per_s"] > 0 and real["median_s"] > 0


def test_the_magic_scores_a_property_of_the_schema_and_a_re_run_is_free(
    real_nb: Any, reviews: pd.DataFrame, tmp_path: Path
) -> None:
    real_nb.user_ns.update(reviews=reviews, schema=OBJECT)
    cache = tmp_path / "eval.sqlite"
    cell = (
        f"%%generate --each reviews -m {SHORT} --format schema --expect label=sentiment "
        f"--temperature 0 --seed 1 --num-predict 48 --cache {cache} -o out\n{PROMPT}"
    )
    result = run(real_nb, cell)
    assert result.success, result.error_in_exec
    ev = real_nb.user_ns["out"]
    assert isinstance(ev, Evaluation)
    (row,) = ev.summary_rows()
    assert (row["answered"], row["failed"]) == (48, 0)
    assert set(ev.results.sentiment) <= {"positive", "negative"}  # the schema's property, as a column
    assert row["accuracy"] <= 0.5
    final = real_nb.publisher.messages[-1]["data"]["text/html"]
    assert "ollama-magic-eval-summary" in final and 'class="ollama-magic-eval-chart"' in final
    assert run(real_nb, cell).success
    again = real_nb.user_ns["out"]
    assert again.results.from_cache.all()  # nothing was generated again
    assert again.summary_rows()[0]["accuracy"] == row["accuracy"]
    real_nb.user_ns.pop("reviews")
    real_nb.user_ns.pop("schema")
    real_nb.user_ns.pop("out")
