"""What the magic costs a real model on one CPU: smollm2, a kernel and JupyterLab on one core.

    python benchmarks/real_model_cost.py            # ~100, 1,000 and 4,000 tokens, 3 runs each
    python benchmarks/real_model_cost.py --quick    # one short answer, one run (what CI runs)

On Binder the model, the kernel and the Jupyter server share about one CPU, so every
millisecond the notebook spends is taken from the model.  This pins, with ``taskset``:

* core A: a private real Ollama (a clone of a ``scripts/local-ollama`` folder: ``--source``,
  default ``$OLLAMA_E2E_DIR``, ``$OLLAMA_LOCAL_DIR`` or ``.ollama-local``) with all its
  threads, hence the model runner it starts; JupyterLab (tests/browser/jupyter_server.py),
  hence the notebook's kernel;
* core B: this script, Playwright and Debian's Chromium, which shows the notebook.

Then it measures:

1. **The trap.**  A runner starts a thread per core it sees; pinned to one core, the extra
   thread spins against the first.  smollm2's tokens/s and the runner's thread count with
   Ollama's default, and with ``num_thread`` sized from the affinity mask as
   scripts/cpu_quota.py sizes it (what scripts/local-ollama writes into the Modelfile).
2. **The magic's cost.**  One notebook, opened in Chromium, run with Run > Run All Cells.
   Each measuring cell streams the same request (raw prompt ``# Numbers`` + a list,
   temperature 0, ``num_predict`` N, so the length is set by N; checked from
   ``eval_count`` and ``done_reason``) three ways, interleaved: a bare ``requests``
   streaming loop, ``%%generate`` as shipped (display budget on), and ``%%generate`` with
   ``NotebookView.budget = None`` (as before the budget).  The magic runs through
   ``run_cell_magic("generate", ...)`` (the very function behind ``%%generate``), so that
   one cell holds the measurement window.  Per cell: smollm2's tokens/s (Ollama's
   ``eval_count / eval_duration``), the CPU seconds per second of streaming of the kernel
   and of the Jupyter server (``/proc/PID/stat``, utime + stime, 10 ms ticks), and the
   display messages the kernel sent (its display publisher, counted).

Medians of ``--reps`` runs.  Target: ``%%generate`` loses less than 1% of the bare loop's
tokens/s at every length (MISSED is printed otherwise).  On a machine shared with other
work (another process on core A takes from the model too) the tokens/s vary by more than
1% from run to run; the CPU seconds per second of the kernel and server are the steadier
figure, since on one core the model loses about that share: "CPU taken from the model"
(kernel + server beyond the bare loop's) is judged against 1% too.  ``--save`` keeps the
measurements, ``--report`` prints their table again.  Exit 0 unless the set-up or a run
failed: the figures are printed, not asserted.  Every process started here is ended by
its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from cpu_quota import runner_threads  # noqa: E402

from tests.browser.jupyter_server import Lab, running_lab  # noqa: E402
from tests.browser.jupyterlab_page import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SHOTS,
    open_notebook,
    run_all_cells,
    wait_footer,
    write_notebook,
)
from tests.e2e.servers import OllamaServer, ServerError, children, private_ollamas  # noqa: E402

MODEL = "smollm2"
PROMPT = "# Numbers\n\n- 1\n- 2\n- 3"
NUM_CTX = 8192
MODES = ("bare", "magic", "magic-nobudget")
LABELS = {
    "bare": "bare `requests` loop",
    "magic": "`%%generate` (display budget)",
    "magic-nobudget": "`%%generate`, no budget (before)",
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to ``core`` (processes it starts later inherit it)."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], check=True, capture_output=True)


def runner_pid(server: OllamaServer) -> int | None:
    """The model runner the server started (``ollama runner ...``), if one is loaded."""
    for pid in children(server.pid):
        with contextlib.suppress(OSError):
            if b"runner" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


def request_body(num_predict: int, num_thread: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {"temperature": 0.0, "seed": 0, "num_predict": num_predict, "num_ctx": NUM_CTX}
    if num_thread is not None:
        options["num_thread"] = num_thread
    return {"model": MODEL, "prompt": PROMPT, "raw": True, "stream": True, "keep_alive": "30m", "options": options}


def stream_once(host: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One streamed answer from the driver (the trap, the warm-up); the final ``done`` object."""
    last: dict[str, Any] = {}
    with requests.post(f"http://{host}/api/generate", json=body, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line:
                last = json.loads(line)
    return last


def tokens_per_second(done: dict[str, Any]) -> float:
    return float(done["eval_count"]) / float(done["eval_duration"]) * 1e9 if done.get("eval_duration") else 0.0


# -- 1. the trap -------------------------------------------------------------------------------


def measure_trap(server: OllamaServer, tokens: int) -> list[dict[str, Any]]:
    """tokens/s and runner threads with Ollama's default, then sized from the affinity mask."""
    allowed = len(os.sched_getaffinity(server.pid))
    online = os.cpu_count() or allowed
    sized = runner_threads(None, allowed, online)
    rows = []
    for label, num_thread in (("Ollama's default (a thread per core)", None), ("sized by cpu_quota.py", sized)):
        started = time.monotonic()
        try:
            done = stream_once(server.host, request_body(tokens, num_thread), timeout=600)
        except requests.RequestException as exc:
            rows.append({"label": label, "num_thread": num_thread, "error": str(exc)[:200]})
            continue
        runner = runner_pid(server)
        rows.append(
            {
                "label": label,
                "num_thread": num_thread,
                "tokens": done.get("eval_count"),
                "tps": tokens_per_second(done),
                "seconds": time.monotonic() - started,
                "threads": thread_count(runner) if runner else None,
                "runner_cpus": sorted(os.sched_getaffinity(runner)) if runner else None,
            }
        )
    return rows


# -- 2. the notebook ---------------------------------------------------------------------------

SETUP = """\
%load_ext ollama_magic
import json, os, time
import requests
from ollama_magic.display.render import NotebookView

HOST, SERVER_PID, RESULTS = {host!r}, {server_pid}, {results!r}
PROMPT, NUM_THREAD, NUM_CTX = {prompt!r}, {num_thread!r}, {num_ctx}
BUDGET = NotebookView.budget
TICK = os.sysconf("SC_CLK_TCK")
_shell = get_ipython()
_publish = _shell.display_pub.publish
_sent = [0]

def _counting_publish(*args, **kwargs):
    _sent[0] += 1  # every display_data / update_display_data message the kernel sends
    return _publish(*args, **kwargs)

_shell.display_pub.publish = _counting_publish

def _cpu(pid):
    fields = open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

def _body(n):
    options = {{"temperature": 0.0, "seed": 0, "num_predict": n, "num_ctx": NUM_CTX}}
    if NUM_THREAD is not None:
        options["num_thread"] = NUM_THREAD
    return {{"model": "{model}", "prompt": PROMPT, "raw": True, "stream": True, "keep_alive": "30m",
            "options": options}}

def measure(mode, n, rep):
    before = (_cpu(os.getpid()), _cpu(SERVER_PID), _sent[0], time.monotonic())
    if mode == "bare":
        text, done = [], {{}}
        with requests.post(f"http://{{HOST}}/api/generate", json=_body(n), stream=True, timeout=3600) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line:
                    chunk = json.loads(line)
                    text.append(chunk.get("response", ""))
                    if chunk.get("done"):
                        done = chunk
        stats = {{k: done.get(k) for k in ("eval_count", "eval_duration", "done_reason")}}
        request = _body(n)
    else:
        NotebookView.budget = BUDGET if mode == "magic" else None
        try:
            options = json.dumps({{"num_thread": NUM_THREAD}}) if NUM_THREAD is not None else "{{}}"
            _shell.run_cell_magic(
                "generate",
                f"-m {model} --host {{HOST}} --raw -t 0 --seed 0 --num-predict {{n}} --num-ctx {{NUM_CTX}}"
                f" --keep-alive 30m --options '{{options}}' -o _bench_r",
                PROMPT,
            )
        finally:
            NotebookView.budget = BUDGET
        result = _shell.user_ns["_bench_r"]
        stats = {{"eval_count": result.stats.eval_count, "eval_duration": result.stats.eval_duration,
                 "done_reason": result.done_reason}}
        request = result.request
    after = (_cpu(os.getpid()), _cpu(SERVER_PID), _sent[0], time.monotonic())
    seconds = after[3] - before[3]
    row = dict(mode=mode, n=n, rep=rep, seconds=seconds, updates=after[2] - before[2],
               kernel_cpu=after[0] - before[0], server_cpu=after[1] - before[1], request=request, **stats)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\\n")

print("kernel", os.getpid(), "parent", os.getppid(), "cpus", sorted(os.sched_getaffinity(0)), "budget", BUDGET)
"""


def measuring_cells(lengths: list[int], reps: int) -> list[str]:
    """One cell per measurement; the order of the three ways rotates, so drift hits all alike."""
    cells = []
    for rep in range(reps):
        for n in lengths:
            shift = rep % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                cells.append(f"measure({mode!r}, {n}, {rep})")
    return cells


def wait_results(lab: Lab, results: Path, rows: int, timeout_s: float) -> None:
    """Until every measuring cell has written its row (or the kernel died, or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = len(results.read_text().splitlines()) if results.exists() else 0
        if done >= rows:
            return
        if lab.process.poll() is not None:
            raise RuntimeError("JupyterLab exited during the measurements")
        time.sleep(1.0)
    raise RuntimeError(f"only {done} of {rows} measurements within {timeout_s:.0f} s")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def run_notebook(
    lab: Lab, server: OllamaServer, lengths: list[int], reps: int, num_thread: int | None, timeout_s: float
) -> tuple[list[dict[str, Any]], str]:
    results = lab.root / "results.jsonl"
    setup = SETUP.format(
        host=server.host,
        server_pid=lab.process.pid,
        results=str(results),
        prompt=PROMPT,
        num_thread=num_thread,
        num_ctx=NUM_CTX,
        model=MODEL,
    )
    cells = [setup, *measuring_cells(lengths, reps)]
    # The last cell shows what a person sees: the answer streamed in, with its footer.
    last = f"%%generate -m {MODEL} --raw -t 0 --num-predict {min(lengths)} --num-ctx {NUM_CTX}\n{PROMPT}"
    if num_thread is not None:
        last = last.replace("--raw", f"--raw --options '{{\"num_thread\": {num_thread}}}'", 1)
    write_notebook(lab.root / "cost.ipynb", *cells, last)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(60_000)
        page = context.new_page()
        open_notebook(page, lab.notebook_url("cost.ipynb"), timeout_ms=180_000)
        run_all_cells(page, timeout_ms=60_000)
        # Not the cells' prompts: JupyterLab only renders the cells in view of a long notebook.
        wait_results(lab, results, len(cells) - 1, timeout_s)
        page.locator(".jp-Cell").nth(len(cells)).scroll_into_view_if_needed()
        wait_footer(page, len(cells), timeout_ms=120_000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / "real-model-cost.png"
        page.locator(".jp-Cell").nth(len(cells)).screenshot(path=str(shot))
        setup_output = page.locator(".jp-Cell").nth(0).locator(".jp-OutputArea").inner_text()
        context.close()
    lab.shutdown_kernels()
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    return rows, setup_output.strip()


# -- the report --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(rows: list[dict[str, Any]], lengths: list[int], reps: int) -> list[str]:
    missed = []
    print("\n## What %%generate costs smollm2 on one CPU\n")
    print(
        "| tokens asked | way | tokens (done_reason) | tokens/s (median, min-max) | vs bare"
        " | kernel CPU s/s | Jupyter server CPU s/s | CPU taken from the model | display updates | seconds |"
    )
    print("| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in lengths:
        bare_tps = None
        bare_cpu = None
        for mode in MODES:
            runs = [r for r in rows if r["n"] == n and r["mode"] == mode]
            if not runs:
                print(f"| {n:,} | {LABELS[mode]} | no result | | | | | | | |")
                continue
            tps = [float(r["eval_count"]) / float(r["eval_duration"]) * 1e9 for r in runs if r.get("eval_duration")]
            kernel = [r["kernel_cpu"] / r["seconds"] for r in runs]
            server = [r["server_cpu"] / r["seconds"] for r in runs]
            tokens = sorted({f"{r['eval_count']} ({r['done_reason']})" for r in runs})
            cpu = median(kernel) + median(server)
            vs = taken = ""
            if mode == "bare":
                bare_tps = median(tps)
                bare_cpu = cpu
            if bare_cpu is not None and mode != "bare":
                taken = f"{100 * (cpu - bare_cpu):.2f}%"
                if mode == "magic" and cpu - bare_cpu > 0.01:
                    missed.append(f"{n:,} tokens: kernel + server take {taken} of a CPU more than the bare loop")
                    taken += " **MISSED**"
            if bare_tps and mode != "bare":
                loss = 1 - median(tps) / bare_tps
                vs = f"{-100 * loss:+.1f}%"
                if mode == "magic" and loss > 0.01:
                    missed.append(f"{n:,} tokens: %%generate {100 * loss:.1f}% slower than the bare loop")
                    vs += " **MISSED**"
            print(
                f"| {n:,} | {LABELS[mode]} | {', '.join(tokens)} | {median(tps):.2f} ({min(tps):.2f}-{max(tps):.2f})"
                f" | {vs} | {median(kernel):.4f} | {median(server):.4f} | {taken}"
                f" | {median([r['updates'] for r in runs]):.0f} | {median([r['seconds'] for r in runs]):.1f} |"
            )
    print(
        f"\n{reps} run(s) per row, interleaved; medians.  CPU s/s: CPU seconds per second of streaming."
        "\nCPU taken from the model: kernel + server CPU s/s beyond the bare loop's, the share of"
        " the one core the model loses (steadier than tokens/s on a shared machine)."
    )
    return missed


def print_trap(rows: list[dict[str, Any]]) -> None:
    print("\n## The trap: runner threads on one pinned core\n")
    print("| runner threads | num_thread | threads in the runner process | runner CPUs | tokens | tokens/s |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for row in rows:
        if "error" in row:
            print(f"| {row['label']} | {row['num_thread']} | | | failed: {row['error']} | |")
            continue
        print(
            f"| {row['label']} | {row['num_thread'] if row['num_thread'] is not None else '(default)'}"
            f" | {row['threads']} | {row['runner_cpus']} | {row['tokens']} | {row['tps']:.2f} |"
        )


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short answer, one run (a few seconds of streaming)")
    parser.add_argument("--lengths", type=int, nargs="+", help="tokens per answer (default 100 1000 4000)")
    parser.add_argument("--reps", type=int, help="runs per length and way (default 3; --quick 1)")
    parser.add_argument("--trap-tokens", type=int, help="tokens per trap request (default 32; --quick 16)")
    parser.add_argument("--source", type=Path, help="a scripts/local-ollama folder to clone")
    parser.add_argument("--save", type=Path, help="keep the measurements (one JSON object a line) in this file")
    parser.add_argument(
        "--report", type=Path, metavar="JSONL", help="print the table of saved measurements, run nothing"
    )
    args = parser.parse_args(argv)
    if args.report:
        saved = [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]
        report(saved, sorted({r["n"] for r in saved}), max(r["rep"] for r in saved) + 1)
        return 0
    lengths = args.lengths or ([40] if args.quick else [100, 1000, 4000])
    reps = args.reps or (1 if args.quick else 3)
    trap_tokens = args.trap_tokens or (16 if args.quick else 32)

    source = args.source
    if source is None:
        for candidate in (os.environ.get("OLLAMA_E2E_DIR"), os.environ.get("OLLAMA_LOCAL_DIR"), REPO / ".ollama-local"):
            if candidate and (Path(candidate) / "models").is_dir():
                source = Path(candidate)
                break
    if source is None:
        print("no scripts/local-ollama folder: run scripts/local-ollama start, or pass --source DIR", file=sys.stderr)
        return 2
    cores = sorted(os.sched_getaffinity(0))
    model_core, browser_core = cores[0], cores[-1]
    print(f"# real_model_cost: {MODEL}, lengths {lengths}, {reps} run(s) each")
    print(
        f"CPUs {cores}: Ollama + runner, JupyterLab + kernel on CPU {model_core}; this script and Chromium on CPU"
        f" {browser_core}.  Load average at start: {load_average()} (a machine shared with other work)."
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="real-model-cost-") as tmp:
        work = Path(tmp)
        try:
            with private_ollamas(source, work, 1, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_KEEP_ALIVE": "30m"}) as servers:
                server = servers[0]
                pin(server.pid, model_core)
                trap = measure_trap(server, trap_tokens)
                print_trap(trap)
                sized = next((r["num_thread"] for r in trap if r["num_thread"] is not None), None)
                stream_once(server.host, request_body(8, sized), timeout=300)  # loaded with the sized runner
                runner = runner_pid(server)
                if runner:
                    pin(runner, model_core)
                os.sched_setaffinity(0, {browser_core})  # Playwright and Chromium inherit this
                (work / "lab").mkdir()
                with running_lab(work / "lab", server.host, ["taskset", "-c", str(model_core)]) as lab:
                    expected = sum(lengths) * reps * len(MODES) / 2.0  # seconds at a slow 2 tokens/s
                    rows, setup = run_notebook(lab, server, lengths, reps, sized, timeout_s=expected + 300)
                if args.save:
                    args.save.write_text("".join(json.dumps(row) + "\n" for row in rows))
                print(f"\nnotebook kernel: {setup}")
        except (ServerError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"set-up failed: {exc}", file=sys.stderr)
            return 2
    requests_differ = {json.dumps(r["request"], sort_keys=True) for r in rows if r["mode"] != "bare"} - {
        json.dumps(r["request"], sort_keys=True) for r in rows if r["mode"] == "bare"
    }
    missed = report(rows, lengths, reps)
    if requests_differ:
        print(f"\nNOTE: the magic's requests differed from the bare loop's: {sorted(requests_differ)[:1]}")
    print(f"\nLoad average at the end: {load_average()}; {time.monotonic() - started:.0f} s in all.")
    print(f"Screenshot of the last cell: {SHOTS / 'real-model-cost.png'}")
    for line in missed:
        print(f"MISSED: {line} (target: under 1%)")
    expected_rows = len(lengths) * reps * len(MODES)
    if len(rows) != expected_rows:
        print(f"only {len(rows)} of {expected_rows} runs reported a result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
