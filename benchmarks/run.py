"""Benchmarks for ollama_magic: run ``python benchmarks/run.py [--quick] [--profile]``.

Prints Markdown tables (throughput, display cost, time to first token, import and
``%load_ext`` time, peak memory) and a table of targets with MISSED next to any that
is not met.  Exits 0 unless a benchmark crashed.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if importlib.util.find_spec("ollama_magic") is None:  # not installed: use this checkout
    sys.path.insert(1, str(HERE.parent))

import clients  # noqa: E402
import stream_server  # noqa: E402

# -- output --------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; numbers right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) if cells else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))
            + " |"
        )

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric, strict=True))
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x×%").replace(" ms", "").replace(" MB", ""))
    except ValueError:
        return False
    return True


def section(title: str, note: str = "") -> None:
    print(f"\n## {title}\n")
    if note:
        print(note + "\n")


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Target:
    name: str
    target: str
    measured: str
    ok: bool


@dataclass
class Bench:
    quick: bool
    host: str = ""
    port: int = 0
    targets: list[Target] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    shell: clients.MagicShell | None = None
    # filled by throughput, read by display cost: per N, the magic run with the median time
    magic_runs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def target(self, name: str, target: str, measured: str, ok: bool) -> None:
        self.targets.append(Target(name, target, measured, ok))


# -- the server ----------------------------------------------------------------------


class ServerProcess:
    """stream_server.py in a subprocess (the other core), stopped when our stdin pipe closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "stream_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"the bench server did not start: {line!r}")
        self.port = int(line.split()[1])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=5)


# -- 1 + 2: throughput -----------------------------------------------------------------


def timed(fn: Callable[[], tuple[int, int]]) -> tuple[float, int, int]:
    start = time.perf_counter()
    chunks, chars = fn()
    return time.perf_counter() - start, chunks, chars


def bench_throughput(b: Bench, sizes: Sequence[int], reps: int) -> None:
    official = clients.official_client(b.host)
    assert b.shell is not None
    shell = b.shell
    readers: dict[str, Callable[[str], tuple[int, int]] | None] = {
        "bare requests loop (iter_lines + json.loads)": lambda p: clients.bare_loop(b.host, p),
        "official ollama Client.generate(stream=True)": (lambda p: official(b.host, p)) if official else None,
        "ollama_magic.generate()": lambda p: clients.magic_generate(b.host, p),
        "%%generate magic, NotebookView + display": shell.run,
    }
    names = list(readers)
    bare, off, gen, magic = names
    rows = []
    best: dict[tuple[str, int], float] = {}
    for n in sizes:
        prompt = f"chunks={n}"
        # warm up: the server builds and caches the body; imports and connections happen
        for _ in range(2):
            stream_server.measure_server(b.port, prompt)
        server_times = [stream_server.measure_server(b.port, prompt)[0] for _ in range(reps)]
        for read in readers.values():
            if read is not None:
                read("chunks=50")
        times: dict[str, list[float]] = {name: [] for name, read in readers.items() if read is not None}
        magic_stats: list[tuple[float, dict[str, Any]]] = []
        for rep in range(reps):
            order = [nm for nm in names if nm in times]
            order = order[rep % len(order) :] + order[: rep % len(order)]  # rotate: drift hits all alike
            for name in order:
                read = readers[name]
                assert read is not None
                gc.collect()
                elapsed, chunks, _chars = timed(lambda read=read, prompt=prompt: read(prompt))  # type: ignore[misc]
                if chunks != n:
                    raise RuntimeError(f"{name} saw {chunks} chunks, expected {n}")
                times[name].append(elapsed)
                if name == magic:
                    magic_stats.append((elapsed, _display_stats(shell, elapsed)))
        magic_stats.sort(key=lambda x: x[0])
        b.magic_runs[n] = magic_stats[len(magic_stats) // 2][1]
        rows.append(
            [
                f"{n:,}",
                "bench server alone (raw socket read)",
                fmt_rate(n / min(server_times)),
                fmt_rate(n / statistics.median(server_times)),
                ms(min(server_times)),
                "",
                "",
            ]
        )
        bare_best, bare_med = min(times[bare]), statistics.median(times[bare])
        for name in names:
            if name not in times:
                rows.append([f"{n:,}", name, "skipped: `pip install ollama` to include it", "", "", "", ""])
                continue
            fastest, med = min(times[name]), statistics.median(times[name])
            best[(name, n)] = fastest
            rows.append(
                [
                    f"{n:,}",
                    name,
                    fmt_rate(n / fastest),
                    fmt_rate(n / med),
                    ms(fastest),
                    f"{bare_best / fastest:.2f}x",
                    f"{bare_med / med:.2f}x",
                ]
            )
    section(
        "Throughput",
        "Each client reads the same stream from the bench server (N chunks of ~5 characters, one HTTP "
        "chunk per NDJSON line). chunks/s = N / wall time from request to last chunk (for the magic: the "
        f"whole cell, with display updates and the final render). Best and median of {reps}, the clients "
        "interleaved; 'vs bare' = the bare loop's time / this time (higher is faster). Targets use the best "
        "times: other work on the machine only ever adds time.",
    )
    print(
        table(
            ["N", "client", "chunks/s (best)", "chunks/s (median)", "time (best)", "vs bare", "vs bare (median)"],
            rows,
        )
    )

    # The magic has to turn the whole answer into HTML at least once: that alone caps it.
    from ollama_magic.display.render import markdown_to_html

    n = sizes[-1]
    text = "".join(stream_server._token(i) for i in range(n))
    one_pass = []
    for _ in range(3):
        start = time.perf_counter()
        markdown_to_html(text)
        one_pass.append(time.perf_counter() - start)
    floor = best[(gen, n)] + min(one_pass)
    cap = best[(bare, n)] / floor
    print(
        f"\nOne Markdown-to-HTML pass over the {n:,}-chunk answer ({len(text) / 1000:.0f} kB) takes "
        f"{ms(min(one_pass))}. The magic shows the whole answer as HTML, so it renders every character at "
        f"least once: it cannot take less than generate() ({ms(best[(gen, n)])}) plus that pass, "
        f"{ms(floor)}, which is {cap:.2f}x of the bare loop ({ms(best[(bare, n)])}) on this stream."
    )
    worst = min(best[(bare, n)] / best[(magic, n)] for n in sizes)
    b.target(
        "magic throughput vs bare loop",
        ">= 0.80x",
        ", ".join(f"{best[(bare, n)] / best[(magic, n)]:.2f}x @{n:,}" for n in sizes)
        + f" (one Markdown pass caps it at {cap:.2f}x @{n:,})",
        worst >= 0.8,
    )
    if (off, sizes[0]) in best:
        ratios = [best[(off, n)] / best[(magic, n)] for n in sizes]
        b.target(
            "magic throughput vs official client",
            ">= 1.00x",
            ", ".join(f"{r:.2f}x @{n:,}" for r, n in zip(ratios, sizes, strict=True)),
            min(ratios) >= 1.0,
        )
    else:
        b.target("magic throughput vs official client", ">= 1.00x", "skipped (ollama not installed)", True)


def _display_stats(shell: clients.MagicShell, elapsed: float) -> dict[str, Any]:
    view = shell.view
    streaming = [s for s in shell.shows if s[2]]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(streaming)]
    return {
        "elapsed": elapsed,
        "updates": view.updates,
        "streaming_updates": len(streaming),
        "published": shell.publisher.count,
        "render_seconds": view.render_seconds,
        "final_render": sum(s[1] for s in shell.shows if not s[2]),
        "streaming_render": sum(s[1] for s in streaming),
        "min_gap": min(gaps) if gaps else float("nan"),
        "interval": view.interval,
        "html_chars": shell.publisher.html_chars,
    }


# -- 3: display cost -----------------------------------------------------------------


def bench_display(b: Bench, sizes: Sequence[int]) -> None:
    rows = []
    ok_freq = True
    for n in sizes:
        s = b.magic_runs[n]
        bound = s["elapsed"] / s["interval"] + 2
        gap_ok = not (s["min_gap"] < s["interval"] - 0.001)
        ok_freq = ok_freq and s["updates"] <= bound and gap_ok
        rows.append(
            [
                f"{n:,}",
                ms(s["elapsed"]),
                s["updates"],
                f"{bound:.1f}",
                ms(s["min_gap"]) if s["min_gap"] == s["min_gap"] else "n/a",
                ms(s["render_seconds"]),
                ms(s["streaming_render"]),
                ms(s["final_render"]),
                f"{100 * s['render_seconds'] / s['elapsed']:.0f}%",
                f"{s['render_seconds'] / n * 1e6:.2f}",
                f"{s['html_chars'] / 1e6:.2f} MB",
            ]
        )
    section(
        "Display cost (%%generate in NotebookView)",
        "From the median-time magic run of the throughput table. updates = display calls (streaming + final); "
        "bound = elapsed / interval + 2; min gap = shortest time between two streaming updates (interval "
        f"{b.magic_runs[sizes[0]]['interval'] * 1000:.0f} ms); render = time inside display calls (Markdown "
        "to HTML, IPython's formatters, publish); html sent = total text/html handed to the publisher.",
    )
    print(
        table(
            [
                "N",
                "elapsed",
                "updates",
                "bound",
                "min gap",
                "render total",
                "streaming",
                "final",
                "render share",
                "render µs/chunk",
                "html sent",
            ],
            rows,
        )
    )
    small, large = sizes[0], sizes[-1]
    factor = large / small
    s_small, s_large = b.magic_runs[small], b.magic_runs[large]
    render_ratio = s_large["render_seconds"] / s_small["render_seconds"]
    time_ratio = s_large["elapsed"] / s_small["elapsed"]
    print(
        f"\n{factor:.0f}x the chunks: render time x{render_ratio:.1f}, cell time x{time_ratio:.1f} "
        f"(linear would be x{factor:.0f}, quadratic x{factor * factor:.0f})."
    )
    b.target(
        "display updates not more frequent than the interval",
        "updates <= elapsed/interval + 2; gaps >= interval",
        ", ".join(
            f"{b.magic_runs[n]['updates']} <= {b.magic_runs[n]['elapsed'] / b.magic_runs[n]['interval'] + 2:.0f} @{n:,}"
            for n in sizes
        ),
        ok_freq,
    )
    b.target(
        "display cost linear in the chunks",
        f"x{factor:.0f} chunks -> render <= x{2 * factor:.0f}",
        f"render x{render_ratio:.1f}, cell x{time_ratio:.1f}",
        render_ratio <= 2 * factor and time_ratio <= 2 * factor,
    )


# -- 4: time to first token ----------------------------------------------------------


def bench_first_token(b: Bench, reps: int, delay_ms: int = 200) -> None:
    assert b.shell is not None
    official = clients.official_client(b.host)
    prompt = f"chunks=20 delay_ms={delay_ms}"
    readers: dict[str, Callable[..., tuple[int, int]] | None] = {
        "bare requests loop": lambda p, f: clients.bare_loop(b.host, p, f),
        "official ollama client": (lambda p, f: official(b.host, p, f)) if official else None,
        "ollama_magic.generate() (first on_chunk)": lambda p, f: clients.magic_generate(b.host, p, f),
        "%%generate magic (first display publish)": b.shell.run,
    }
    firsts: dict[str, list[float]] = {name: [] for name, r in readers.items() if r is not None}
    for read in readers.values():
        if read is not None:
            read("chunks=5", None)  # warm up
    for _ in range(reps):
        for name, seen in firsts.items():
            read = readers[name]
            assert read is not None
            marks: list[float] = []
            gc.collect()
            start = time.perf_counter()
            read(prompt, lambda marks=marks: marks.append(time.perf_counter()))
            seen.append(marks[0] - start)
    names = list(readers)
    base_best, base_med = min(firsts[names[0]]), statistics.median(firsts[names[0]])
    rows = []
    overheads = {}
    for name in names:
        if name not in firsts:
            rows.append([name, "skipped", "", "", "", ""])
            continue
        fastest, med = min(firsts[name]), statistics.median(firsts[name])
        overheads[name] = fastest - base_best
        rows.append(
            [
                name,
                ms(fastest),
                ms(med),
                ms(max(firsts[name])),
                f"{(fastest - base_best) * 1000:+.2f} ms",
                f"{(med - base_med) * 1000:+.2f} ms",
            ]
        )
    section(
        "Time to first visible token",
        f"The server waits {delay_ms} ms before the first chunk. Time from the call (for the magic: "
        f"`run_cell` of the %%generate cell) to the first chunk in the client's hands. Best, median and "
        f"worst of {reps}; overhead = this minus the bare loop's (best and median).",
    )
    print(
        table(
            ["client", "first token (best)", "median", "worst", "overhead vs bare", "overhead (median)"],
            rows,
        )
    )
    for key, label in ((names[3], "magic"), (names[2], "generate()")):
        b.target(
            f"first-token overhead, {label}",
            "< 5 ms",
            f"{overheads[key] * 1000:+.2f} ms",
            overheads[key] < 0.005,
        )


# -- 5: import and %load_ext time -----------------------------------------------------

_LOAD_EXT_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
t1 = time.perf_counter()
shell.run_line_magic("load_ext", "ollama_magic")
t2 = time.perf_counter()
assert "generate" in shell.magics_manager.magics["cell"]
print(json.dumps({"ipython": t1 - t0, "load_ext": t2 - t1}))
"""


def _env() -> dict[str, str]:
    """The environment of the fresh interpreters: this process's ollama_magic, bytecode cached.

    Installed packages have their ``.pyc``; a checkout run with PYTHONDONTWRITEBYTECODE
    would compile ollama_magic from source at every start.  PYTHONPYCACHEPREFIX keeps
    the bytecode in a temporary folder (nothing is written into the source tree), and a
    first, unmeasured start fills it.
    """
    import ollama_magic

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "ollama-magic-bench-pycache")
    package_parent = str(Path(ollama_magic.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="ollama-magic-bench-ipython-"))
    return env


def _importtime(code: str) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, indented name) for each import ``code`` makes, in order."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
        cwd=tempfile.gettempdir(),
    )
    entries = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|", 2)
        entries.append((int(self_us), int(cumulative), name.rstrip()[1:]))
    return entries


def bench_load_ext(b: Bench, reps: int) -> None:
    runs = []
    for _ in range(reps + 1):  # the first start fills the bytecode cache: not counted
        out = subprocess.run(
            [sys.executable, "-c", _LOAD_EXT_SCRIPT],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
            cwd=tempfile.gettempdir(),
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs = runs[1:]

    def row(label: str, key: str) -> list[str]:
        values = [r[key] for r in runs]
        return [label, ms(min(values)), ms(statistics.median(values)), ms(max(values))]

    section(
        "Import and %load_ext time (fresh processes)",
        f"Best, median and worst of {reps} fresh interpreters: IPython's own start (import + InteractiveShell), "
        "then `%load_ext ollama_magic` in it (everything ollama_magic imports that IPython had not).",
    )
    print(
        table(
            ["step", "best", "median", "worst"],
            [row("IPython import + InteractiveShell()", "ipython"), row("%load_ext ollama_magic", "load_ext")],
        )
    )
    load = min(r["load_ext"] for r in runs)
    b.target("%load_ext ollama_magic beyond IPython's start", "< 150 ms", ms(load), load < 0.150)

    # What those milliseconds are: import ollama_magic.notebook.magics after IPython is up.
    entries = _importtime("import IPython.core.interactiveshell, IPython.display; import ollama_magic.notebook.magics")
    # the entries after the last top-level import that came before ollama_magic's
    top = [i for i, e in enumerate(entries) if not e[2].startswith(" ")]
    mine = [i for i in top if entries[i][2].startswith("ollama_magic")]
    first = max((i for i in top if i < mine[0]), default=-1) + 1
    subtree = entries[first : mine[-1] + 1]
    total = sum(e[0] for e in subtree)
    rows = [[ms(c / 1e6), ms(s / 1e6), f"`{n}`"] for s, c, n in sorted(subtree, key=lambda e: -e[1])[:14]]
    print(
        f"\n`python -X importtime`: importing ollama_magic.notebook.magics once IPython is imported costs "
        f"{ms(total / 1e6)} (sum of self times); the largest cumulative entries:\n"
    )
    print(table(["cumulative", "self", "module (indent = nesting)"], rows))

    entries = _importtime("import ollama_magic")
    rows = [[ms(c / 1e6), ms(s / 1e6), f"`{n}`"] for s, c, n in sorted(entries, key=lambda e: -e[1])[:10]]
    print('\n`python -X importtime -c "import ollama_magic"` (no IPython): top cumulative entries:\n')
    print(table(["cumulative", "self", "module (indent = nesting)"], rows))


# -- 6: peak memory ------------------------------------------------------------------


def bench_memory(b: Bench, answer_bytes: int) -> None:
    import tracemalloc

    from ollama_magic.display.render import Answer, markdown_to_html

    assert b.shell is not None
    prompt = f"bytes={answer_bytes}"
    _, n_chunks, size = stream_server.build_body(0, answer_bytes)
    stream_server.measure_server(b.port, prompt)  # the server builds and caches the body
    shell = b.shell
    results: dict[str, Any] = {}

    def measure(fn: Callable[[], Any]) -> tuple[float, float]:
        gc.collect()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        results["last"] = fn()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        results.pop("last")
        return peak, elapsed

    from ollama_magic import generate

    text = generate(prompt, clients.MODEL, host=b.host).text
    shell.publisher.keep_last = False
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("bare requests loop (keeps a list of the pieces)", lambda: clients.bare_loop(b.host, prompt)),
        ("ollama_magic.generate()", lambda: clients.magic_generate(b.host, prompt)),
        ("%%generate magic with display updates", lambda: shell.run(prompt)),
        ("for comparison: markdown_to_html(whole answer)", lambda: markdown_to_html(text)),
        ("for comparison: Answer(whole answer) display bundle", lambda: Answer(text)._repr_mimebundle_()),
    ]
    tracemalloc.start()
    rows = []
    peaks = {}
    try:
        for name, fn in cases:
            peak, elapsed = measure(fn)
            peaks[name] = peak
            rows.append([name, f"{peak / 1e6:.2f} MB", f"{peak / size:.2f}x", ms(elapsed)])
    finally:
        tracemalloc.stop()
        shell.publisher.keep_last = True
    section(
        "Peak memory",
        f"An answer of {size / 1e6:.2f} MB ({n_chunks:,} chunks). tracemalloc peak above the memory in use "
        "before the call (the kept answer included); 'x answer' = peak / answer size. Times are under "
        "tracemalloc (slow), for orientation only.",
    )
    print(table(["what", "peak", "x answer", "time (traced)"], rows))
    for key, label in ((cases[1][0], "generate()"), (cases[2][0], "magic with display")):
        b.target(
            f"peak memory, {label}",
            "< 3x answer",
            f"{peaks[key] / size:.2f}x ({peaks[key] / 1e6:.1f} MB for {size / 1e6:.2f} MB)",
            peaks[key] < 3 * size,
        )


# -- profile -------------------------------------------------------------------------


def profile_magic(b: Bench, n: int) -> None:
    assert b.shell is not None
    prompt = f"chunks={n}"
    b.shell.run(prompt)
    section(f"Profile: %%generate, {n:,} chunks")
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(b.shell.run, prompt)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        return
    profiler = Profiler(interval=0.0005)
    profiler.start()
    b.shell.run(prompt)
    profiler.stop()
    print("```")
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    print("```")


# -- main ----------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import ollama_magic

    where = Path(ollama_magic.__file__).resolve().parent
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    bits = [
        f"Python {platform.python_version()}",
        f"{os.cpu_count()} CPUs (load average {load}: other work on the machine makes the figures noisy)",
        f"ollama_magic from {where}",
    ]
    for dist in ("ollama_magic", "ipython", "requests", "urllib3", "markdown-it-py", "ollama", "httpx"):
        try:
            bits.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            bits.append(f"{dist} (not installed)")
    return ", ".join(bits)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (CI: well under 60 s)")
    parser.add_argument("--profile", action="store_true", help="also print a profile of the magic's largest run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    quick = args.quick
    sizes = (2_000, 20_000) if quick else (10_000, 100_000)
    reps = 3 if quick else 7

    print(f"# ollama_magic benchmarks ({'quick' if quick else 'full'} run)\n")
    print(_versions())
    b = Bench(quick=quick)
    durations: list[str] = []
    server = ServerProcess()
    try:
        b.host = f"127.0.0.1:{server.port}"
        b.port = server.port
        b.shell = clients.MagicShell(b.host)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("throughput", lambda: bench_throughput(b, sizes, reps)),
            ("display cost", lambda: bench_display(b, sizes)),
            ("first token", lambda: bench_first_token(b, reps)),
            ("load_ext", lambda: bench_load_ext(b, 3 if quick else 7)),
            ("memory", lambda: bench_memory(b, 150_000 if quick else 1_000_000)),
        ]
        if args.profile:
            steps.append(("profile", lambda: profile_magic(b, sizes[-1])))
        for name, step in steps:
            step_start = time.perf_counter()
            try:
                step()
            except Exception:
                b.crashed.append(name)
                print(f"\n**{name} crashed:**\n\n```\n{traceback.format_exc()}```")
            durations.append(f"{name} {time.perf_counter() - step_start:.1f} s")
            sys.stdout.flush()
    finally:
        server.close()

    section("Targets")
    rows = [[t.name, t.target, t.measured, "ok" if t.ok else "MISSED"] for t in b.targets]
    rows += [[name, "runs", "crashed", "CRASHED"] for name in b.crashed]
    print(table(["target", "target value", "measured", "ok?"], rows))
    print(f"\nTotal time: {time.perf_counter() - started:.1f} s ({', '.join(durations)})")
    return 1 if b.crashed else 0


if __name__ == "__main__":
    sys.exit(main())
