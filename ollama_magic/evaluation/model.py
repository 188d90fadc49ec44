"""Which model, which prompt?  Score models (and prompt variants) over a dataset.

:func:`evaluate` sends every row of a dataset to every model, once per prompt variant
(variants × models × rows), through the one batch engine
(:func:`~ollama_magic.batch.runner.generate_many`: concurrency, busy retries, per-item
errors, Ctrl-C keeps what finished, the cache makes a re-run free).  What this module
adds is only what an evaluation needs:

* the items, interleaved row by row (every contender advances together, so a grid of
  the first rows fills in at once and an interrupted run is comparable);
* the scoring: an answer (or one property of a ``format`` object) against an expected
  column, compared after trimming and case-folding, or any ``score(answer, row) -> float``;
* the figures per contender (a model, or a model with one prompt variant): answered,
  failed, accuracy, agreement with the others, median / p95 seconds per row, tokens/s,
  total tokens;
* :class:`Evaluation`: ``.results`` (a long DataFrame), ``.summary``, ``.chart()``,
  ``.disagreements()``, ``.mistakes(model)``.

This module has no display and does not run anything: the live display, the chart and
the displayable :class:`~ollama_magic.evaluation.view.Evaluation` are
:mod:`ollama_magic.evaluation.view`; :func:`~ollama_magic.evaluation.runner.evaluate` is
:mod:`ollama_magic.evaluation.runner`.  pandas is only
needed for the DataFrames (``.results``, ``.summary``...), not to run or to show.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..batch import each
from ..engine.errors import GenerationInterrupted, InvalidRequestError
from ..engine.result import GenerationResult, failure_reason
from ..engine.result import outcome as status

__all__ = ["EvaluationData", "EvaluationInterrupted", "Expect", "Tracker", "parse_expect"]

Score = Callable[[Any, Mapping[str, Any]], float]


class EvaluationInterrupted(GenerationInterrupted):
    """Ctrl-C stopped an evaluation; ``partial`` (also ``evaluation``) scores what finished."""

    @property
    def evaluation(self) -> EvaluationData:
        return self.partial  # type: ignore[return-value]


# -- what is expected ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """How an answer is scored: against a column (optionally one property of the answer), or by a callable."""

    column: str | None = None
    property: str | None = None
    score: Score | None = None

    def describe(self) -> str:
        if self.score is not None:
            return getattr(self.score, "__name__", "score")
        return f"{self.column}={self.property}" if self.property else str(self.column)


def parse_expect(value: Any, namespace: Mapping[str, Any] | None = None) -> Expect | None:
    """``"label"``, ``"label=sentiment"``, a callable, or the name of a callable in ``namespace``.

    >>> parse_expect("label=sentiment")
    Expect(column='label', property='sentiment', score=None)
    >>> parse_expect(None) is None
    True
    """
    if value is None or isinstance(value, Expect):
        return value
    if callable(value):
        return Expect(score=value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(
            f"expect is a column name, 'COLUMN=PROPERTY' or a callable score(answer, row), not {value!r}."
        )
    text = value.strip()
    if namespace is not None and text.isidentifier() and callable(namespace.get(text)):
        return Expect(score=namespace[text])
    column, _, prop = text.partition("=")
    column, prop = column.strip(), prop.strip()
    if not column or ("=" in text and not prop):
        raise InvalidRequestError(f"expect {text!r}: write COLUMN or COLUMN=PROPERTY (e.g. label=sentiment).")
    return Expect(column=column, property=prop or None)


def normalise(value: Any) -> str | None:
    """An answer as compared: trimmed (spaces, and quotes or a full stop around it) and
    case-folded text, objects as sorted JSON; None stays None.  So ``"Positive."`` is
    ``positive``, but ``It is positive`` is not (a schema makes such answers comparable).

    >>> normalise("  Positive.\\n"), normalise('"yes"'), normalise(3), normalise({"b": 1, "a": "X"})
    ('positive', 'yes', '3', '{"a": "x", "b": 1}')
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return value.strip().strip(_AROUND).strip().casefold()


#: What is trimmed around an answer besides spaces: quotes and end punctuation.
_AROUND = "\"'.!?,;:`"


def answer_value(result: GenerationResult, prop: str | None = None) -> Any:
    """What is scored of an answer: one property of its object, its JSON value when it is a
    string (an enum schema), else its text; None when it failed."""
    if status(result) not in ("ok", "cached"):
        return None
    if prop is not None:
        return result.data.get(prop) if isinstance(result.data, dict) else None
    if isinstance(result.data, (str, int, float, bool)):
        return result.data
    return result.text


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile by nearest rank (p95 of 20 values is the 19th smallest).

    >>> percentile([1, 2, 3, 4], 50), percentile(range(1, 21), 95), percentile([], 95)
    (2, 19, None)
    """
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- who is compared ----------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One column of the grid: a model with one prompt variant."""

    model: str
    variant: str
    label: str


def contenders(models: Sequence[str], variants: Sequence[str]) -> list[Contender]:
    """Labels: the model's name, the variant's with one model, ``variant · model`` with both."""
    out = []
    for variant in variants:
        for model in models:
            if len(variants) == 1:
                label = model
            elif len(models) == 1:
                label = variant
            else:
                label = f"{variant} · {model}"
            out.append(Contender(model, variant, label))
    return out


# -- running figures (fed by generate_many's on_item) -----------------------------------


@dataclass
class ContenderState:
    """What a live progress line shows for one contender."""

    total: int
    done: int = 0
    failed: int = 0
    cached: int = 0
    tokens: int = 0
    eval_seconds: float = 0.0
    correct: float = 0.0
    scored: int = 0

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.eval_seconds if self.tokens and self.eval_seconds > 0 else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


@dataclass
class Tracker:
    """Every item's result as it arrives, and each contender's running counts.

    Items are numbered row by row: item ``i`` is row ``i // C``, contender ``i % C``.
    ``record`` runs on the batch's worker threads; the display reads under ``lock``.
    """

    contenders: list[Contender]
    rows: list[dict[str, Any]]
    expect: Expect | None = None
    expected: list[Any] | None = None
    results: dict[int, GenerationResult] = field(default_factory=dict)
    #: Each recorded item's score (None: no expect, or the score callable failed).
    scores: dict[int, float | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    states: list[ContenderState] = field(init=False)
    #: Bumped at every recorded item, so a display redraws only when something changed.
    version: int = 0
    #: The first error a ``score`` callable raised, and how many answers it left unscored.
    score_error: str | None = None
    score_failures: int = 0

    def __post_init__(self) -> None:
        self.states = [ContenderState(len(self.rows)) for _ in self.contenders]

    def item(self, row: int, column: int) -> int:
        return row * len(self.contenders) + column

    def score(self, row: int, result: GenerationResult) -> float | None:
        """The answer's score (1.0 right, 0.0 wrong, or the callable's); None without expect.

        A ``score`` callable that raises (or returns no number) leaves the answer unscored
        rather than stopping the run from a worker thread: the first such error is kept in
        ``score_error`` and :func:`evaluate` reports it in one line at the end.
        """
        try:
            return score_of(self.expect, result, self.rows[row], self.expected[row] if self.expected else None)
        except Exception as exc:
            with self.lock:
                self.score_failures += 1
                if self.score_error is None:
                    label = self.rows[row].get("index", row)
                    self.score_error = f"{type(exc).__name__}: {exc} (row {label})"
            return None

    def record(self, index: int, result: GenerationResult) -> None:
        row, column = divmod(index, len(self.contenders))
        value = self.score(row, result)
        with self.lock:
            self.results[index] = result
            self.scores[index] = value
            state = self.states[column]
            state.done += 1
            word = status(result)
            if word in ("failed", "invalid"):
                state.failed += 1
            if word == "cached":
                state.cached += 1
            elif word == "ok":
                state.tokens += result.stats.eval_count or 0
                state.eval_seconds += (result.stats.eval_duration or 0) / 1e9
            if value is not None:
                state.scored += 1
                state.correct += value or 0.0
            self.version += 1


def score_of(expect: Expect | None, result: GenerationResult, row: Mapping[str, Any], expected: Any) -> float | None:
    """One answer's score; a failed answer scores 0 (it counts against accuracy), no expect None."""
    if expect is None:
        return None
    if status(result) not in ("ok", "cached"):
        return 0.0
    if expect.score is not None:
        value = float(expect.score(answer_value(result, expect.property), row))
        if math.isnan(value):
            raise ValueError("the score is NaN")
        return value
    return 1.0 if normalise(answer_value(result, expect.property)) == normalise(expected) else 0.0


# -- the evaluation -----------------------------------------------------------------------


class EvaluationData:
    """An evaluation's answers and figures, with no display (the view's :class:`Evaluation`
    adds the HTML, the chart and the live grid: the view depends on this, never the reverse).

    ``summary_rows()`` / ``.summary``: one row per contender (answered, failed, accuracy,
    agreement, median and p95 seconds per row, tokens/s, total tokens); ``.results``:
    one row per answer; ``disagreements()``, ``mistakes(model)``; ``chart()``.
    Accuracy counts a failed answer as wrong (rows that did not run are left out);
    agreement is the share of rows, among those both answered, where a contender gave
    the same answer as each other one (the mean over the others).
    """

    def __init__(
        self,
        data: Any,
        tracker: Tracker,
        *,
        fmt: Any = None,
        seconds: float = 0.0,
        interrupted: bool = False,
    ) -> None:
        self.data = data
        self.contenders = tracker.contenders
        self.rows = tracker.rows
        self.expect = tracker.expect
        self.expected = tracker.expected
        self.format = fmt
        self.seconds = seconds
        self.interrupted = interrupted
        self._tracker = tracker
        self._summary: list[dict[str, Any]] | None = None
        self._scores = dict(tracker.scores)

    # -- per answer --------------------------------------------------------------------

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.contenders))

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(c.variant for c in self.contenders))

    def result(self, row: int, contender: int) -> GenerationResult | None:
        """The answer of one contender for one row (by position); None if it did not run."""
        return self._tracker.results.get(self._tracker.item(row, contender))

    def answer(self, row: int, contender: int) -> Any:
        result = self.result(row, contender)
        prop = self.expect.property if self.expect else None
        return None if result is None else answer_value(result, prop)

    def score(self, row: int, contender: int) -> float | None:
        return self._scores.get(self._tracker.item(row, contender))

    def _find(self, model: str, variant: str | None) -> list[int]:
        found = [
            i
            for i, c in enumerate(self.contenders)
            if model in (c.model, c.label) and (variant is None or c.variant == variant)
        ]
        if not found:
            names = ", ".join(c.label for c in self.contenders)
            raise KeyError(f"{model!r} is not in this evaluation (it has {names}).")
        return found

    # -- figures ------------------------------------------------------------------------

    def agreement(self, a: int | None = None, b: int | None = None) -> float | None:
        """Share of rows both answered where contenders ``a`` and ``b`` gave the same answer.

        Without arguments: the share of rows every contender answered where all agree.
        """
        count = agreed = 0
        pairs = [(a, b)] if a is not None and b is not None else None
        for row in range(len(self.rows)):
            if pairs is None:
                answers = [self._compared(row, c) for c in range(len(self.contenders))]
            else:
                answers = [self._compared(row, c) for c in pairs[0]]  # type: ignore[union-attr]
            if any(x is None for x in answers):
                continue
            count += 1
            agreed += len(set(answers)) == 1
        return agreed / count if count else None

    def _compared(self, row: int, contender: int) -> str | None:
        result = self.result(row, contender)
        if result is None or status(result) not in ("ok", "cached"):
            return None
        return normalise(self.answer(row, contender))

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per contender: the figures of ``.summary`` (no pandas needed).

        Computed once (the answers no longer change), then copied: the table, the chart and
        the footer all read them."""
        if self._summary is None:
            self._summary = self._figures()
        return [dict(row) for row in self._summary]

    def _figures(self) -> list[dict[str, Any]]:
        out = []
        for column, contender in enumerate(self.contenders):
            results = [self.result(row, column) for row in range(len(self.rows))]
            ran = [r for r in results if r is not None]
            words = [status(r) for r in ran]
            answered = sum(w in ("ok", "cached") for w in words)
            failed = sum(w in ("failed", "invalid") for w in words)
            seconds = [r.stats.total_seconds for r, w in zip(ran, words, strict=True) if w in ("ok", "cached")]
            seconds = [s for s in seconds if s is not None]
            tokens = sum(r.stats.eval_count or 0 for r, w in zip(ran, words, strict=True) if w in ("ok", "cached"))
            eval_seconds = sum(
                (r.stats.eval_duration or 0) / 1e9 for r, w in zip(ran, words, strict=True) if w in ("ok", "cached")
            )
            scores = [self.score(row, column) for row in range(len(self.rows)) if results[row] is not None]
            scores = [s for s in scores if s is not None]
            others = [o for o in range(len(self.contenders)) if o != column]
            pairwise = [x for x in (self.agreement(column, o) for o in others) if x is not None]
            row: dict[str, Any] = {"model": contender.model}
            if len(self.variants) > 1:
                row["prompt"] = contender.variant
            row.update(
                {
                    "answered": answered,
                    "failed": failed,
                    "accuracy": sum(scores) / len(scores) if scores and self.expect is not None else None,
                    "agreement": sum(pairwise) / len(pairwise) if pairwise else None,
                    "median_s": statistics.median(seconds) if seconds else None,
                    "p95_s": percentile(seconds, 95),
                    "tokens_per_s": tokens / eval_seconds if tokens and eval_seconds > 0 else None,
                    "tokens": tokens,
                }
            )
            out.append(row)
        return out

    def accuracy(self, model: str, variant: str | None = None) -> float | None:
        """The accuracy of one model (and variant), as in the summary."""
        column = self._find(model, variant)[0]
        return self.summary_rows()[column]["accuracy"]

    # -- DataFrames ---------------------------------------------------------------------

    def _properties(self) -> list[str]:
        return each.object_properties(self.format)

    def result_rows(self) -> list[dict[str, Any]]:
        """The rows of ``.results`` as dicts: row label, model, prompt variant, answer, each
        schema property, expected, score, correct, seconds, tokens, from_cache, status, error."""
        props = self._properties()
        out = []
        for row, names in enumerate(self.rows):
            for column, contender in enumerate(self.contenders):
                result = self.result(row, column)
                if result is None:
                    continue
                word = status(result)
                good = word in ("ok", "cached")
                record: dict[str, Any] = {
                    "row": names.get("index", row),
                    "model": contender.model,
                    "prompt": contender.variant,
                    "answer": result.text if good else None,
                }
                for prop in props:
                    record[prop] = result.data.get(prop) if good and isinstance(result.data, dict) else None
                score = self.score(row, column)
                record["expected"] = self.expected[row] if self.expected is not None else None
                record["score"] = score
                record["correct"] = None if score is None else score >= 1.0
                record["seconds"] = result.stats.total_seconds if good else None
                record["tokens"] = result.stats.eval_count if good else None
                record["from_cache"] = result.cached
                record["status"] = word
                record["error"] = failure_reason(result) if not good else None
                out.append(record)
        return out

    @property
    def results(self) -> Any:
        """A long pandas DataFrame, one row per answer (see :meth:`result_rows`)."""
        return _pandas().DataFrame(self.result_rows())

    @property
    def summary(self) -> Any:
        """A pandas DataFrame, one row per model (and prompt variant), indexed by its label."""
        return _pandas().DataFrame(self.summary_rows(), index=[c.label for c in self.contenders])

    def _row_frame(self, rows: list[int], columns: dict[str, list[Any]]) -> Any:
        pandas = _pandas()
        if each.kind_of(self.data) == "dataframe":
            frame = self.data.iloc[rows].copy()
        else:
            frame = pandas.DataFrame(
                {"item": [self.rows[r].get("item") for r in rows]}, index=[self.rows[r]["index"] for r in rows]
            )
        for name, values in columns.items():
            frame[name] = values
        return frame

    def disagreements(self) -> Any:
        """The rows where the contenders that answered did not all give the same answer:
        the data's columns, then one column per contender with its answer."""
        rows = []
        for row in range(len(self.rows)):
            answers = {self._compared(row, c) for c in range(len(self.contenders))} - {None}
            if len(answers) > 1:
                rows.append(row)
        columns = {c.label: [self.answer(r, i) for r in rows] for i, c in enumerate(self.contenders)}
        return self._row_frame(rows, columns)

    def mistakes(self, model: str, variant: str | None = None) -> Any:
        """The rows ``model`` got wrong or failed (needs ``expect``): the data, its answer, the
        expected value, its score, and the error of a failed answer."""
        if self.expect is None:
            raise InvalidRequestError("mistakes() needs an evaluation with expect (a column or a score).")
        column = self._find(model, variant)[0]
        rows = [r for r in range(len(self.rows)) if (s := self.score(r, column)) is not None and s < 1.0]
        return self._row_frame(
            rows,
            {
                "answer": [self.answer(r, column) for r in rows],
                "expected": [self.expected[r] if self.expected is not None else None for r in rows],
                "score": [self.score(r, column) for r in rows],
                "error": [_reason(self.result(r, column)) for r in rows],
            },
        )

    # -- in words -------------------------------------------------------------------------

    def summary_text(self) -> str:
        """One line: rows, contenders, time, and each contender's accuracy."""
        bits = [f"{len(self.rows)} rows × {len(self.contenders)}"]
        for contender, row in zip(self.contenders, self.summary_rows(), strict=True):
            acc = row["accuracy"]
            bits.append(
                f"{contender.label}: " + (f"{acc:.0%} accurate" if acc is not None else f"{row['answered']} answered")
            )
        bits.append(f"{self.seconds:.1f} s" + (" (interrupted)" if self.interrupted else ""))
        return " · ".join(bits)

    def __repr__(self) -> str:
        return f"<Evaluation: {self.summary_text()}>"


def _reason(result: GenerationResult | None) -> str | None:
    return None if result is None else failure_reason(result)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is in every test environment
        raise InvalidRequestError("The evaluation's DataFrames need pandas: pip install pandas.") from None
    return pandas
