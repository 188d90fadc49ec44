"""Benchmarks for evaluate(): ``python benchmarks/evaluation.py [--quick]``.

2 models × N rows (2,000 by default) against the local stream server
(``stream_server.py --slots K``: at most K answers at once, each after ``delay_ms``):

1. ``evaluate(..., concurrency=K)`` with its live notebook view on (the progress lines and
   the grid rendered to HTML at each redraw, as a kernel would) and ``expect`` scoring every
   answer, against a bare thread pool of K ``requests`` loops sending the same 2N requests
   (target >= 0.9x), and against ``generate_many`` on the same 2N items with no display (what
   evaluate adds to the engine, reported).
2. The per-item cost with no server delay at concurrency 1: CPU time of this process (all
   threads) per answer, evaluate() minus the bare loop (target < 1 ms), and wall time.
3. The display: how many redraws one run made, against its bound (one per 0.3 s, plus the
   first and the last), whatever the rate of answers.
4. What the end costs: the summary figures, the ``.results`` DataFrame and the chart for 2N answers.

Prints Markdown tables and a targets table (MISSED next to a target not met); exits 0 unless
a benchmark crashed.  Best of several rounds: other work on a machine only adds time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

from batch import (  # benchmarks/ is on the path (python benchmarks/evaluation.py)
    Server,
    bare_pool,
    best,
    counting_display,
    rounds,
)
from run import table

import ollama_magic
from ollama_magic import generate_many
from ollama_magic.evaluation.runner import evaluate
from ollama_magic.evaluation.view import NotebookEvaluation

MODELS = ["bench", "bench-b"]


def live_view() -> tuple[NotebookEvaluation, list[int]]:
    display, counter = counting_display()
    return NotebookEvaluation(display), counter


def rows(n: int, delay_ms: float) -> list[dict[str, Any]]:
    return [{"text": f"chunks=5 delay_ms={delay_ms} item={i}", "label": "positive"} for i in range(n)]


def many(host: str, items: list[dict[str, str]], k: int) -> float:
    """The same requests through generate_many alone (no scoring, no grid): the engine's share."""
    start = time.perf_counter()
    results = generate_many(items, host=host, concurrency=k, progress=False)
    seconds = time.perf_counter() - start
    assert not results.failed, results.summary()
    return seconds


def run_evaluation(host: str, data: Any, k: int) -> tuple[float, Any, int]:
    view, counter = live_view()
    start = time.perf_counter()
    ev = evaluate(data, MODELS, "{text}", expect="label", host=host, concurrency=k, progress=view)
    seconds = time.perf_counter() - start
    failed = sum(r["failed"] for r in ev.summary_rows())
    assert failed == 0, ev.summary_text()
    return seconds, ev, counter[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 rows, k = 2, 2 rounds")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--delay-ms", type=float, default=2.0, help="server time per answer (per slot)")
    parser.add_argument("--slots", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.slots, args.rounds = 300, [2], 2
    import pandas as pd

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# evaluate() benchmarks ({ollama_magic.__file__}; load average {load:.2f}, {os.cpu_count()} CPUs)")
    targets: list[tuple[str, str, str, bool]] = []
    n = args.rows
    answers = n * len(MODELS)

    print(
        f"\n## {len(MODELS)} models × {n:,} rows = {answers:,} answers (5 chunks each, {args.delay_ms} ms per answer)\n"
    )
    out = []
    for k in args.slots:
        server = Server(k)
        try:
            data = pd.DataFrame(rows(n, args.delay_ms))
            prompts = [text for text in data.text for _ in MODELS]
            run_evaluation(server.host, data.iloc[:30], k)  # warm up: imports, connections
            items = [{"prompt": text, "model": model} for text in data.text for model in MODELS]
            bare_times, many_times, eval_times = rounds(
                args.rounds,
                lambda: bare_pool(server.host, prompts, k),  # noqa: B023 - run now
                lambda: many(server.host, items, k),  # noqa: B023
                lambda: run_evaluation(server.host, data, k)[0],  # noqa: B023
            )
            ratio = min(bare_times) / min(eval_times)
            engine = min(many_times) / min(eval_times)
            out.append(
                [
                    k,
                    f"{answers / min(bare_times):,.0f}",
                    f"{answers / min(many_times):,.0f}",
                    f"{answers / min(eval_times):,.0f}",
                    f"{ratio:.2f}x",
                    f"{engine:.2f}x",
                    best(bare_times),
                    best(eval_times),
                ]
            )
            targets.append((f"evaluate() >= 0.9x a bare pool at k={k}", ">= 0.90x", f"{ratio:.2f}x", ratio >= 0.9))
            targets.append((f"evaluate() vs generate_many at k={k}", "report", f"{engine:.2f}x", True))
        finally:
            server.close()
    print(
        table(
            [
                "k (slots = concurrency)",
                "bare pool answers/s",
                "generate_many answers/s",
                "evaluate answers/s",
                "evaluate / bare",
                "evaluate / generate_many",
                "bare",
                "evaluate",
            ],
            out,
        )
    )

    server = Server(1)
    try:
        data = pd.DataFrame(rows(n, 0))
        prompts = [text for text in data.text for _ in MODELS]
        run_evaluation(server.host, data.iloc[:30], 1)
        walls: dict[str, list[float]] = {"bare": [], "eval": []}
        cpus: dict[str, list[float]] = {"bare": [], "eval": []}
        runs = {
            "bare": lambda: bare_pool(server.host, prompts, 1),
            "eval": lambda: run_evaluation(server.host, data, 1),
        }
        for _ in range(args.rounds + 1):
            for name, run in runs.items():
                cpu, wall = time.process_time(), time.perf_counter()
                run()
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
        cpu_overhead = (statistics.median(cpus["eval"]) - statistics.median(cpus["bare"])) / answers * 1000
        wall_overhead = (min(walls["eval"]) - min(walls["bare"])) / answers * 1000
        print("\nPer-answer cost (no server delay, concurrency 1; CPU = this process, all threads):\n")
        print(
            table(
                ["", "wall (best)", "wall per answer", "CPU per answer (median)"],
                [
                    [
                        name,
                        f"{min(walls[key]):.3f} s",
                        f"{min(walls[key]) / answers * 1000:.3f} ms",
                        f"{statistics.median(cpus[key]) / answers * 1000:.3f} ms",
                    ]
                    for name, key in (("bare loop", "bare"), ("evaluate (live grid, scoring)", "eval"))
                ]
                + [["overhead", "", f"{wall_overhead:+.3f} ms", f"{cpu_overhead:+.3f} ms"]],
            )
        )
        targets.append(
            (
                "per-answer overhead of evaluate()",
                "< 1 ms",
                f"{cpu_overhead:+.3f} ms CPU, {wall_overhead:+.3f} ms wall",
                max(cpu_overhead, wall_overhead) < 1.0,
            )
        )

        seconds, ev, updates = run_evaluation(server.host, data, 1)
        bound = math.ceil(seconds / 0.3) + 2  # the first, one per interval at most, the last
        print(f"\nLive view redraws in one run of {seconds:.2f} s: {updates} (bound: one per 0.3 s + 2 = {bound})")
        targets.append(("display redraws bounded", f"<= {bound}", str(updates), updates <= bound))

        timings = []
        for what, fn in (
            ("summary figures", ev.summary_rows),
            (".results DataFrame", lambda: ev.results),
            ("chart (SVG)", lambda: ev.chart().svg),
            ("final display (HTML)", ev._repr_mimebundle_),
        ):
            start = time.perf_counter()
            fn()
            timings.append([what, f"{(time.perf_counter() - start) * 1000:.1f} ms"])
        print(f"\nThe end, for {answers:,} answers:\n")
        print(table(["", "time"], timings))
    finally:
        server.close()

    print("\n## Targets\n")
    print(
        table(["target", "wanted", "measured", ""], [[a, b, c, "met" if ok else "MISSED"] for a, b, c, ok in targets])
    )


if __name__ == "__main__":
    main()
