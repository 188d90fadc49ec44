"""Benchmarks for generate_many: ``python benchmarks/batch.py [--quick] [--real]``.

1. Against the local stream server (``stream_server.py --slots K``: at most K answers at
   once, each after ``delay_ms``, like an Ollama with ``OLLAMA_NUM_PARALLEL=K``): N short
   items through ``generate_many`` at concurrency K, with its progress display on (the
   notebook bar, rendered to HTML at each update as a kernel would), against a bare thread
   pool of K ``requests`` loops on the same items.  Throughput ratio (target >= 0.9x), and
   the per-item overhead measured with no server delay at concurrency 1 (target < 1 ms).
2. The same batch with a cache: first run (answers stored), then the re-run served from
   the cache (target: under 5% of the first run's time).
3. With ``--real``: two private real Ollama servers (clones of the shared server's folder,
   each started with ``OLLAMA_NUM_PARALLEL=2``, one thread per model runner), 40 items of
   ``tiny`` and of ``tiny-long`` (``--real-tokens`` tokens each): one server at concurrency 1 and 2, then Debian's nginx
   with the shipped ``examples/nginx/ollama-classroom.conf`` in front of both at 2 and 4,
   with how nginx split the answers.  Needs ``OLLAMA_E2E_HOST`` and ``OLLAMA_E2E_DIR`` as
   for the end-to-end tests, and nginx (``scripts/nginx-deps``).

Prints Markdown tables and a targets table (MISSED next to a target not met); exits 0
unless a benchmark crashed.  Best of several rounds: other work on a machine only adds time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if importlib.util.find_spec("ollama_magic") is None:  # not installed: use this checkout
    sys.path.insert(1, str(REPO))

from run import table  # noqa: E402

import ollama_magic  # noqa: E402
from ollama_magic import generate_many  # noqa: E402
from ollama_magic.batch.view import NotebookProgress  # noqa: E402


class Server:
    """stream_server.py with K slots in a subprocess (the other core)."""

    def __init__(self, slots: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "stream_server.py"), "--slots", str(slots)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"the bench server did not start: {line!r}")
        self.host = f"127.0.0.1:{line.split()[1]}"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=5)


class _Handle:
    """A display handle that formats what it is given, as ipykernel's publisher would."""

    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    def update(self, obj: Any) -> None:
        obj._repr_mimebundle_()
        self.counter[0] += 1


def counting_display() -> tuple[Callable[..., _Handle], list[int]]:
    """IPython's display as a kernel would run it (every object formatted), counting the draws."""
    counter = [0]

    def display(obj: Any, display_id: bool = False) -> _Handle:
        obj._repr_mimebundle_()
        counter[0] += 1
        return _Handle(counter)

    return display, counter


def notebook_progress(prompts: list[str]) -> tuple[NotebookProgress, list[int]]:
    display, counter = counting_display()
    return NotebookProgress(display, prompts=prompts, rows=10), counter


def bare_pool(host: str, prompts: list[str], k: int) -> float:
    """A thread pool of k plain loops: requests.post(stream=True), iter_lines, json.loads."""
    local = threading.local()
    url = f"http://{host}/api/generate"

    def one(prompt: str) -> str:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        with session.post(url, json={"model": "bench", "prompt": prompt}, stream=True) as response:
            text = []
            for line in response.iter_lines():
                obj = json.loads(line)
                text.append(obj.get("response", ""))
                if obj.get("done"):
                    break
        return "".join(text)

    start = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        answers = list(pool.map(one, prompts))
    seconds = time.perf_counter() - start
    assert len(answers) == len(prompts) and all(answers)
    return seconds


def many(host: str, prompts: list[str], k: int, cache: str | None = None) -> tuple[float, Any, int]:
    progress, counter = notebook_progress(prompts)
    start = time.perf_counter()
    results = generate_many(prompts, "bench", host=host, concurrency=k, progress=progress, cache=cache)
    seconds = time.perf_counter() - start
    assert not results.failed, results.summary()
    return seconds, results, counter[0]


def best(times: list[float]) -> str:
    return f"{min(times):.3f} s (median {statistics.median(times):.3f})"


def rounds(n: int, *runs: Callable[[], float]) -> list[list[float]]:
    """Run each callable n times, interleaved so that drift hits all alike."""
    out: list[list[float]] = [[] for _ in runs]
    for _ in range(n):
        for i, run in enumerate(runs):
            out[i].append(run())
    return out


def local_benchmarks(args: argparse.Namespace, targets: list[tuple[str, str, str, bool]]) -> None:
    n = args.items
    print(f"\n## {n:,} short items against the local stream server (5 chunks each, {args.delay_ms} ms per answer)\n")
    rows = []
    for k in args.slots:
        server = Server(k)
        try:
            prompts = [f"chunks=5 delay_ms={args.delay_ms} item={i}" for i in range(n)]
            many(server.host, prompts[:50], k)  # warm up: imports, connections
            bare_times, many_times = rounds(
                args.rounds,
                lambda: bare_pool(server.host, prompts, k),  # noqa: B023 - run now
                lambda: many(server.host, prompts, k)[0],  # noqa: B023
            )
            ratio = min(bare_times) / min(many_times)
            ceiling = k / (args.delay_ms / 1000) if args.delay_ms else float("inf")
            rows.append(
                [
                    k,
                    f"{n / min(bare_times):,.0f}",
                    f"{n / min(many_times):,.0f}",
                    f"{ceiling:,.0f}",
                    f"{ratio:.2f}x",
                    best(bare_times),
                    best(many_times),
                ]
            )
            targets.append((f"generate_many >= 0.9x a bare pool at k={k}", ">= 0.90x", f"{ratio:.2f}x", ratio >= 0.9))
        finally:
            server.close()
    print(
        table(
            [
                "k (slots = concurrency)",
                "bare pool items/s",
                "generate_many items/s",
                "server ceiling items/s",
                "ratio",
                "bare time",
                "generate_many time",
            ],
            rows,
        )
    )

    # Per-item overhead: no server delay, one at a time, so every millisecond is the client's.
    # Wall time on a shared machine mostly measures the other processes; the CPU time this
    # process used (all its threads) is what the client itself costs per item.
    server = Server(1)
    try:
        prompts = [f"chunks=5 delay_ms=0 item={i}" for i in range(n)]
        many(server.host, prompts[:50], 1)
        walls: dict[str, list[float]] = {"bare": [], "many": []}
        cpus: dict[str, list[float]] = {"bare": [], "many": []}
        runs = {"bare": lambda: bare_pool(server.host, prompts, 1), "many": lambda: many(server.host, prompts, 1)}
        for _ in range(args.rounds + 2):
            for name, run in runs.items():
                cpu, wall = time.process_time(), time.perf_counter()
                run()
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
        cpu_overhead = (statistics.median(cpus["many"]) - statistics.median(cpus["bare"])) / n * 1000
        wall_overhead = (min(walls["many"]) - min(walls["bare"])) / n * 1000
        _, _, updates = many(server.host, prompts, 1)
        print(f"\nPer-item cost (no server delay, concurrency 1, {n:,} items; CPU = this process, all threads):\n")
        print(
            table(
                ["", "wall (best)", "wall per item", "CPU per item (median)"],
                [
                    [
                        "bare loop",
                        f"{min(walls['bare']):.3f} s",
                        f"{min(walls['bare']) / n * 1000:.3f} ms",
                        f"{statistics.median(cpus['bare']) / n * 1000:.3f} ms",
                    ],
                    [
                        "generate_many (progress on)",
                        f"{min(walls['many']):.3f} s",
                        f"{min(walls['many']) / n * 1000:.3f} ms",
                        f"{statistics.median(cpus['many']) / n * 1000:.3f} ms",
                    ],
                    ["overhead", "", f"{wall_overhead:+.3f} ms", f"{cpu_overhead:+.3f} ms"],
                ],
            )
        )
        print(f"\nProgress display updates in one run: {updates} (throttled to one per 0.25 s)")
        worst = max(cpu_overhead, wall_overhead)
        targets.append(
            (
                "per-item overhead of generate_many",
                "< 1 ms",
                f"{cpu_overhead:+.3f} ms CPU, {wall_overhead:+.3f} ms wall",
                worst < 1.0,
            )
        )
    finally:
        server.close()

    # The cache: a first run that stores every answer, then a re-run served from it.
    k = args.slots[-1]
    server = Server(k)
    folder = tempfile.mkdtemp(prefix="ollama-magic-bench-")
    try:
        prompts = [f"chunks=5 delay_ms={args.delay_ms} item={i}" for i in range(n)]
        first_times, rerun_times = [], []
        for r in range(args.rounds):
            path = os.path.join(folder, f"cache{r}.sqlite")
            first, _, _ = many(server.host, prompts, k, cache=path)
            again, results, _ = many(server.host, prompts, k, cache=path)
            assert results.from_cache == n
            first_times.append(first)
            rerun_times.append(again)
        share = min(rerun_times) / min(first_times)
        print(f"\n## The cache ({n:,} items, k={k})\n")
        print(
            table(
                ["run", "time", "per item"],
                [
                    [
                        "first (answers generated and stored)",
                        best(first_times),
                        f"{min(first_times) / n * 1000:.2f} ms",
                    ],
                    ["re-run (all from the cache)", best(rerun_times), f"{min(rerun_times) / n * 1000:.3f} ms"],
                    ["re-run / first", f"{share * 100:.1f}%", ""],
                ],
            )
        )
        targets.append(("cached re-run vs first run", "< 5%", f"{share * 100:.1f}%", share < 0.05))
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def real_benchmark(args: argparse.Namespace, targets: list[tuple[str, str, str, bool]]) -> None:
    """One real server, concurrency 1 and 2; then nginx in front of two, concurrency 2 and 4."""
    host, source = os.environ.get("OLLAMA_E2E_HOST"), os.environ.get("OLLAMA_E2E_DIR")
    print("\n## A real Ollama 0.9.3 (OLLAMA_NUM_PARALLEL=2 each): one server, and two behind nginx\n")
    if not host or not source:
        print("skipped: set OLLAMA_E2E_HOST and OLLAMA_E2E_DIR (the shared server's folder) to run it")
        return
    sys.path.insert(0, str(REPO))
    from tests.e2e.servers import private_ollamas, running_nginx

    root = Path(tempfile.mkdtemp(prefix="ollama-magic-bench-real-"))
    n = args.real_items
    prompts = [f"Item {i}: say hello." for i in range(n)]
    # tiny answers in a few tokens (the client's and the server's per-request costs show);
    # tiny-long writes --real-tokens tokens (the model's work dominates).  Every runner gets
    # one thread, standing for a machine of its own: two servers on this one machine with
    # llama.cpp's default (a thread per core each) oversubscribe the cores, and its threads,
    # which spin while they wait for each other, then run 20-30x slower than one server.
    one = {"num_thread": 1}
    workloads = [("tiny", {"options": one}), ("tiny-long", {"options": {**one, "num_predict": args.real_tokens}})]
    try:
        with (
            private_ollamas(Path(source), root, 2, {"OLLAMA_NUM_PARALLEL": "2"}) as servers,
            running_nginx(root / "nginx", [s.host for s in servers]) as proxy,
        ):
            setups = [("one server", servers[0].host, (1, 2)), ("nginx, two servers", proxy.host, (2, 4))]
            for server in servers:  # load both models on both servers first
                for model, fields in workloads:
                    generate_many(prompts[:2], model, host=server.host, concurrency=2, progress=False, **fields)
            rows = []
            for model, fields in workloads:
                times: dict[tuple[str, int], list[float]] = {}
                split: Counter[str] = Counter()
                for _ in range(args.real_rounds):
                    for name, where, ks in setups:
                        for k in ks:
                            before = len(proxy.log_entries())
                            start = time.perf_counter()
                            results = generate_many(prompts, model, host=where, concurrency=k, progress=False, **fields)
                            times.setdefault((name, k), []).append(time.perf_counter() - start)
                            assert not results.failed, results.summary()
                            if where == proxy.host:
                                split.update(e["upstream"] for e in proxy.log_entries()[before:])
                base = min(times[("one server", 1)])
                for (name, k), seconds in times.items():
                    rows.append(
                        [model, name, k, best(seconds), f"{n / min(seconds):.2f}", f"{base / min(seconds):.2f}x"]
                    )
                one_2 = base / min(times[("one server", 2)])
                two_4 = base / min(times[("nginx, two servers", 4)])
                targets.append((f"{model}: one server, concurrency 2 vs 1", "report", f"{one_2:.2f}x", True))
                targets.append(
                    (f"{model}: nginx + two servers at 4 vs one server at 1", "report", f"{two_4:.2f}x", True)
                )
                shares = " / ".join(str(c) for _, c in sorted(split.items()))
                rows.append([model, "answers per upstream (nginx log)", "", shares, "", ""])
            print(
                table(["model", "where", "concurrency", f"time for {n} items", "items/s", "vs one server at 1"], rows)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 items, 2 rounds")
    parser.add_argument("--real", action="store_true", help="also measure a private real Ollama (NUM_PARALLEL=2)")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--delay-ms", type=float, default=2.0, help="server time per answer (per slot)")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real-items", type=int, default=40)
    parser.add_argument("--real-rounds", type=int, default=2)
    parser.add_argument("--real-tokens", type=int, default=100, help="tokens per tiny-long answer in --real")
    args = parser.parse_args()
    if args.quick:
        args.items, args.rounds = 500, 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# generate_many benchmarks ({ollama_magic.__file__}; load average {load:.2f}, {os.cpu_count()} CPUs)")
    targets: list[tuple[str, str, str, bool]] = []
    local_benchmarks(args, targets)
    if args.real:
        real_benchmark(args, targets)
    print("\n## Targets\n")
    print(
        table(["target", "wanted", "measured", ""], [[a, b, c, "met" if ok else "MISSED"] for a, b, c, ok in targets])
    )


if __name__ == "__main__":
    main()
