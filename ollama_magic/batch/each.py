"""``%%generate --each VAR``: one prompt per item of a list or per row of a DataFrame.

The cell body is a template filled once per item by :func:`~ollama_magic.engine.interpolate.interpolate`
(the same rule as a single cell), with the item's own names in front of the notebook's:

* a list, tuple or pandas Series: ``{item}`` is the value and ``{index}`` its position
  (a Series' index label);
* a pandas DataFrame: ``{column}`` for each column of the row, ``{index}`` the row's label.

Every prompt is filled before anything is sent, so a template naming something unknown
fails at once with one line.  pandas is optional: it is only imported when the value
already is a pandas object (its module is loaded then).

:func:`output` shapes what ``-o OUT`` holds: the list of results, or for a DataFrame a
copy with a ``response`` column (and one column per property of an object schema).
"""

from __future__ import annotations

import sys
from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from ..engine.errors import InvalidRequestError
from ..engine.interpolate import interpolate
from ..engine.result import GenerationResult


def _pandas_kind(value: Any) -> str | None:
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return None
    if isinstance(value, pandas.DataFrame):
        return "dataframe"
    if isinstance(value, pandas.Series):
        return "series"
    return None


def kind_of(value: Any) -> str:
    """``list``, ``series`` or ``dataframe``; anything else is refused with what to do."""
    kind = _pandas_kind(value)
    if kind is not None:
        return kind
    if isinstance(value, (list, tuple)):
        return "list"
    hint = " (use list(d.items()) or a DataFrame)" if isinstance(value, Mapping) else ""
    raise InvalidRequestError(
        f"--each needs a list, a tuple, a pandas Series or a pandas DataFrame, not a {type(value).__name__}{hint}."
    )


def item_names(value: Any) -> list[dict[str, Any]]:
    """The names each item brings to the template, in order."""
    kind = kind_of(value)
    if kind == "dataframe":
        columns = [str(c) for c in value.columns]
        return [
            {"index": label, **dict(zip(columns, row, strict=True))}
            for label, row in zip(value.index, value.itertuples(index=False, name=None), strict=True)
        ]
    if kind == "series":
        return [{"item": item, "index": label} for label, item in value.items()]
    return [{"item": item, "index": i} for i, item in enumerate(value)]


def prompts(template: str, value: Any, namespace: Mapping[str, Any]) -> list[str]:
    """Fill the template for every item; the first item that cannot be filled says which it is."""
    out = []
    for position, names in enumerate(item_names(value)):
        try:
            out.append(interpolate(template, ChainMap(names, namespace)))  # type: ignore[arg-type]
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"Item {position} of --each: {exc}") from None
    return out


def object_properties(fmt: Any) -> list[str]:
    """The top-level property names of an object schema (empty for anything else)."""
    if isinstance(fmt, Mapping) and fmt.get("type") == "object" and isinstance(fmt.get("properties"), Mapping):
        return [str(name) for name in fmt["properties"]]
    return []


def output(value: Any, results: list[GenerationResult], fmt: Any = None) -> Any:
    """What ``-o OUT`` holds: the results, or for a DataFrame a copy with the answers as columns.

    The copy gets ``response`` (the answer's text; None where the item failed or did not
    run) and, when ``fmt`` is a schema whose top level is an object, one column per
    property (from each valid answer's data).  A property named like an existing column
    becomes ``response_<name>`` rather than overwrite the user's data.
    """
    if kind_of(value) != "dataframe":
        return results
    frame = value.copy()
    ok = [r.complete and not r.error for r in results]
    frame["response"] = [r.text if good else None for r, good in zip(results, ok, strict=True)]
    for name in object_properties(fmt):
        column = name if name not in frame.columns else f"response_{name}"
        frame[column] = [
            r.data.get(name) if good and not r.errors and isinstance(r.data, dict) else None
            for r, good in zip(results, ok, strict=True)
        ]
    return frame
