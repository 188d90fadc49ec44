"""``evaluate()``: every row of a dataset to every model (and prompt variant), scored.

It checks everything before anything is sent, runs the grid through the one batch engine
(:func:`~ollama_magic.batch.runner.generate_many`, told of each answer by ``on_item``),
keeps the figures in a :class:`~ollama_magic.evaluation.model.Tracker` and shows them in
the view.  The runner sits above both: the model knows no view, the view no runner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..batch import each
from ..batch.runner import BatchInterrupted, generate_many
from ..engine import structured
from ..engine.errors import InvalidRequestError
from ..engine.result import outcome as status
from .model import EvaluationInterrupted, Expect, Score, Tracker, contenders, parse_expect
from .view import Evaluation, default_view

__all__ = ["evaluate"]


def _variants(prompt: Any) -> dict[str, str]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidRequestError("prompt is empty: give a template such as 'Is this review positive? {text}'.")
        return {"prompt": prompt}
    if isinstance(prompt, Mapping) and prompt:
        out = {}
        for name, template in prompt.items():
            if not isinstance(template, str) or not template.strip():
                raise InvalidRequestError(f"Prompt variant {name!r} is not a template (a non-empty string).")
            out[str(name)] = template
        return out
    raise InvalidRequestError("prompt is a template (a string) or a dict {name: template} of variants to compare.")


def _models(models: Any) -> list[str]:
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, (list, tuple)) or not models or not all(isinstance(m, str) and m for m in models):
        raise InvalidRequestError("models is a list of model names, e.g. models=['smollm2', 'qwen2.5'].")
    for name in models:
        if models.count(name) > 1:
            raise InvalidRequestError(f"Model {name} is given twice: each model is evaluated once.")
    return list(models)


def _expected(expect: Expect | None, data: Any, rows: list[dict[str, Any]], fmt: Any) -> list[Any] | None:
    """The expected value of every row (checked before anything is sent)."""
    if expect is None or expect.score is not None:
        if expect is not None and expect.property is not None:  # pragma: no cover - parse_expect never makes it
            raise InvalidRequestError("A score callable takes the whole answer; drop the =PROPERTY.")
        return None
    kind = each.kind_of(data)
    column = expect.column
    if kind == "dataframe":
        names = [str(c) for c in data.columns]
        if column not in names:
            raise InvalidRequestError(f"expect {column!r}: the data has no such column (it has {', '.join(names)}).")
    elif column != "item":
        raise InvalidRequestError(
            f"expect {column!r}: a list or Series has no columns; use a DataFrame, or a callable score(answer, row)."
        )
    if expect.property is not None:
        props = each.object_properties(fmt)
        if not props:
            raise InvalidRequestError(
                f"expect {column}={expect.property}: =PROPERTY needs format, an object schema with that property."
            )
        if expect.property not in props:
            raise InvalidRequestError(
                f"expect {column}={expect.property}: the schema has no property {expect.property!r} "
                f"(it has {', '.join(props)})."
            )
    return [row.get(column) for row in rows]


def evaluate(
    data: Any,
    models: Sequence[str] | str,
    prompt: str | Mapping[str, str],
    *,
    expect: str | Score | None = None,
    format: Any = None,  # noqa: A002 - generate()'s own name for it
    concurrency: int = 2,
    cache: Any = None,
    progress: Any = True,
    rows: int = 8,
    namespace: Mapping[str, Any] | None = None,
    on_warning: Callable[[str], None] | None = None,
    **fields: Any,
) -> Evaluation:
    """Send every row of ``data`` to every model, once per prompt variant, and score the answers.

    ``data`` is a list, Series or DataFrame (as for ``%%generate --each``); ``prompt`` a
    template (``{column}``, ``{index}``, ``{item}``) or ``{name: template}`` to compare
    wordings too.  ``expect`` is a column holding the right answer, ``"COLUMN=PROPERTY"``
    to compare one property of a ``format`` object, or ``score(answer, row) -> float``.
    ``concurrency`` requests are in flight at once, over all models (the server's slots);
    ``cache`` (an SQLite path) makes a re-run free and a stopped run resumable.  ``fields``
    are other :func:`generate` keywords (``options``, ``system``, ``host``, ``retries``...).

    The live view (``progress``: True, False or a Progress) shows a line per contender
    and a grid of the first ``rows`` rows.  Ctrl-C raises :class:`EvaluationInterrupted`
    whose ``evaluation`` scores what finished.  Invalid arguments send nothing.
    """
    model_names = _models(models)
    variants = _variants(prompt)
    expectation = parse_expect(expect, namespace)
    names = each.item_names(data)
    if not names:
        raise InvalidRequestError("The data has no rows to evaluate.")
    fmt = structured.resolve_format(format) if format is not None and format != "json" else format
    expected = _expected(expectation, data, names, fmt)
    space = namespace if namespace is not None else {}
    filled = {name: each.prompts(template, data, space) for name, template in variants.items()}
    people = contenders(model_names, list(variants))
    items = [{"prompt": filled[c.variant][row], "model": c.model} for row in range(len(names)) for c in people]
    tracker = Tracker(people, names, expectation, expected)
    if progress is True:
        view: Any = default_view(tracker, rows=rows)
    elif progress:
        view = progress
        if hasattr(view, "attach"):
            view.attach(tracker)
    else:
        view = None
    try:
        results = generate_many(
            items,
            concurrency=concurrency,
            progress=view,
            cache=cache,
            on_warning=on_warning,
            on_item=tracker.record,
            format=fmt,
            **fields,
        )
    except BatchInterrupted as exc:
        partial = Evaluation(data, tracker, fmt=fmt, seconds=exc.results.seconds, interrupted=True)
        if view is not None and hasattr(view, "done"):
            view.done(partial)
        done = sum(1 for r in exc.results if status(r) != "not run")
        raise EvaluationInterrupted(
            f"Evaluation interrupted: {done} of {len(items)} answers kept"
            + (" (and cached: re-run to resume)." if cache else "."),
            partial,
        ) from None
    evaluation = Evaluation(data, tracker, fmt=fmt, seconds=results.seconds)
    if view is not None and hasattr(view, "done"):
        view.done(evaluation)
    if tracker.score_error is not None and expectation is not None:
        message = (
            f"expect {expectation.describe()}(answer, row) failed on {tracker.score_failures} "
            f"answers, which are left unscored; the first: {tracker.score_error}"
        )
        if on_warning is not None:
            on_warning(message)
        else:
            import warnings

            warnings.warn(message, UserWarning, stacklevel=2)
    return evaluation
