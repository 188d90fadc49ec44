#!/usr/bin/env python3
"""Run the example notebooks against a real model, check what a reader would see, and
optionally save them with those outputs (so GitHub and the docs show real answers).

Usage:
    scripts/run_examples.py [--model M] [--host H] [--save] [--timeout S] [NOTEBOOK ...]

The notebooks name no model: each runs in a kernel whose OLLAMA_MAGIC_MODEL is ``--model``
(default: $OLLAMA_MAGIC_MODEL, else smollm2) and whose OLLAMA_HOST is ``--host`` (default
$OLLAMA_HOST).  A notebook fails the check when any cell shows:

- an error output (except in a cell tagged ``raises-exception``, which shows a failure on
  purpose and whose error must then be one line, without a traceback), or a traceback;
- "Hey now!" (the tiny test models' answer) from a model that is not a test model, i.e. a
  notebook run against the wrong model (a test model may answer beside a real one in a
  comparison: each answer is attributed to the model its footer names), or no answer from a
  real model at all;
- an answer that failed its schema ("Schema check failed", "does not match the schema"),
  except in a cell tagged ``may-break-schema`` (one that shows such a failure on purpose);
- a ``%%generate`` answer that is empty (a footer with nothing above it), or none at all.

``--save`` writes each notebook that passed back in place, with its outputs and without the
timing metadata nbclient adds (so a re-run changes only what the model said).  Exit status 1
if any notebook failed.  Used by .ci/binder-build (every notebook, with the Binder fallback
model) and by hand after changing an example: ``scripts/run_examples.py --save``.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
TEST_MODELS = {"tiny", "tiny-long", "tiny:latest", "tiny-long:latest"}
SCHEMA_FAILURES = ("Schema check failed", "does not match the schema")


def cell_text(outputs: list[Any]) -> str:
    """Everything a reader sees in a cell's outputs, as text (HTML tags dropped)."""
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            data = output.get("data", {})
            if "text/html" in data:
                parts.append(html.unescape(re.sub(r"<[^>]+>", " ", str(data["text/html"]))))
            parts.append(str(data.get("text/plain", "")))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


_ANSWER = re.compile(
    r'<div class="ollama-magic">(?P<body>.*?)<div class="ollama-magic-footer"[^>]*>(?P<footer>[^<]*)</div>', re.S
)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment)).strip()


_BATCH = re.compile(r'<div class="ollama-magic-batch"><table>.*?<tbody>(?P<rows>.*?)</tbody>', re.S)
_BATCH_FAILED = re.compile(r"(\d+) failed \(([^)]*)\)")


def answers(outputs: list[Any]) -> list[tuple[str, str]]:
    """The answers a cell shows, each as (model, text): every answer block with a footer
    (one per ``%%generate`` display, one per column of a comparison), the model read from
    the footer's first field, the text from above it (schema problems and status left out);
    and each row of a batch table (``--each``), whose model is the notebook's (model "")."""
    found = []
    for output in outputs:
        if output.output_type != "display_data":
            continue
        page = str(output.get("data", {}).get("text/html", ""))
        for match in _ANSWER.finditer(page):
            body = re.split(r'<div class="ollama-magic-(?:errors|status)"', match["body"], maxsplit=1)[0]
            model = _text(match["footer"]).split(" · ")[0]
            found.append((model, _text(body)))
        for table in _BATCH.finditer(page):
            for row in re.findall(r"<tr>(.*?)</tr>", table["rows"], re.S):
                cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
                if len(cells) >= 3:
                    found.append(("", _text(cells[2])))
    return found


_EVALUATION = re.compile(
    r'<table class="ollama-magic-eval-summary"><thead>(?P<head>.*?)</thead><tbody>(?P<rows>.*?)</tbody>', re.S
)


def evaluated(outputs: list[Any]) -> list[dict[str, str]]:
    """The rows of the summary table an evaluation (``--each`` with several ``-m``) ends
    with: one per model (or prompt variant), by column title ("model", "answered", "failed"...)."""
    found: list[dict[str, str]] = []
    for output in outputs:
        page = str(output.get("data", {}).get("text/html", "")) if output.output_type == "display_data" else ""
        for table in _EVALUATION.finditer(page):
            titles = [_text(t) for t in re.findall(r"<th[^>]*>(.*?)</th>", table["head"], re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table["rows"], re.S):
                cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
                found.append(dict(zip(titles, cells, strict=False)))
    return found


def batch_failures(outputs: list[Any]) -> list[str]:
    """What the final batch table of a cell says failed ("2 × the answer does not match ...")."""
    pages = [str(o.get("data", {}).get("text/html", "")) for o in outputs if o.output_type == "display_data"]
    batch = [p for p in pages if 'class="ollama-magic-batch"><table>' in p]
    found = _BATCH_FAILED.search(_text(batch[-1].split('class="ollama-magic-footer"', 1)[-1])) if batch else None
    return [f"{found[1]} failed ({found[2]})"] if found else []


def is_test_model(model: str) -> bool:
    return model in TEST_MODELS or model.split(":", maxsplit=1)[0] in TEST_MODELS


def problems(nb: Any, model: str) -> list[str]:
    """What a reader of the executed notebook would see go wrong, one line each."""
    found = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Models the notebook shows answering (comparisons, evaluations): where a test model is one
    # of them, its "Hey now!" may also appear in a table printed from the results.
    answering = {who or model for c in code for who, _ in answers(c.outputs)}
    answering |= {row.get("model", "") for c in code for row in evaluated(c.outputs)}
    test_model_shown = any(is_test_model(who) for who in answering if who)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        where = f"code cell {number + 1} ({first[:60]!r})"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            found += [f"{where}: its error is not one line" for e in errors if len(e.traceback) != 1]
        elif errors:
            found.append(f"{where}: error {errors[0].ename}: {errors[0].evalue}")
        text = cell_text(cell.outputs)
        if "Traceback" in text:
            found.append(f"{where}: shows a traceback")
        shown = answers(cell.outputs)
        scored = evaluated(cell.outputs)
        if not shown and not scored and not is_test_model(model) and not test_model_shown and "Hey now!" in text:
            found.append(f"{where}: shows the test model's 'Hey now!' while the model is {model}")
        shown = [(who or model, answer) for who, answer in shown]
        for who, answer in shown:
            # a test model may answer beside a real one in a comparison; a real model never says that
            if not is_test_model(who) and "Hey now!" in answer:
                found.append(f"{where}: {who} answered the test model's 'Hey now!' (was it run against a test model?)")
            if not answer:
                found.append(f"{where}: {who} gave an empty answer")
        if "may-break-schema" not in cell.metadata.get("tags", []):
            found += [f"{where}: {marker!r}" for marker in SCHEMA_FAILURES if marker in text]
            found += [f"{where}: items {failure}" for failure in batch_failures(cell.outputs)]
            found += [
                f"{where}: {row.get('model')} failed {row['failed']} of its rows"
                for row in scored
                if row.get("failed", "0") not in ("0", "")
            ]
        refused = errors or any(o.output_type == "stream" and o.name == "stderr" for o in cell.outputs)
        if cell.source.lstrip().startswith(("%%generate", "%generate")) and not shown and not scored and not refused:
            found.append(f"{where}: no answer with its footer")
    if (
        not is_test_model(model)
        and not any(not is_test_model(who) for who in answering if who)
        and any(
            c.source.lstrip().startswith(("%%generate", "%generate"))
            for c in nb.cells
            if c.cell_type == "code" and "raises-exception" not in c.metadata.get("tags", [])
        )
    ):
        found.append(f"no answer came from a real model (the model was {model})")
    return found


def run(path: Path, model: str, host: str | None, timeout: int) -> tuple[Any, float]:
    """Execute the notebook in a fresh kernel, in the notebook's folder; return it and the seconds."""
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("OLLAMA_MAGIC_MODEL", "OLLAMA_HOST")}
    os.environ["OLLAMA_MAGIC_MODEL"] = model
    if host:
        os.environ["OLLAMA_HOST"] = host
    began = time.monotonic()
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        try:
            client.execute()
        except Exception as exc:  # a cell error: problems() reports it as a reader sees it
            if not hasattr(exc, "ename"):
                raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb, time.monotonic() - began


def tidy(nb: Any) -> None:
    """Drop what changes on every run without meaning anything (timings, kernel run ids)."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("metadata", {}).pop("execution", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--model", default=os.environ.get("OLLAMA_MAGIC_MODEL") or "smollm2")
    parser.add_argument("--host", default=os.environ.get("OLLAMA_HOST"))
    parser.add_argument("--save", action="store_true", help="write each passing notebook back with its outputs")
    parser.add_argument("--timeout", type=int, default=300, help="seconds a cell may take (default 300)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((REPO / "examples").glob("*.ipynb"))
    failed = 0
    for path in paths:
        nb, seconds = run(path, args.model, args.host, args.timeout)
        found = problems(nb, args.model)
        count = sum(len(answers(c.outputs)) for c in nb.cells if c.cell_type == "code")
        status = "ok" if not found else "FAILED"
        print(f"{path.name}: {status} ({count} answers from {args.model}, {seconds:.0f} s)")
        for line in found:
            print(f"  - {line}")
        if found:
            failed += 1
        elif args.save:
            tidy(nb)
            nbformat.write(nb, path)
    print(f"{len(paths) - failed} of {len(paths)} notebooks passed with {args.model}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
