"""A class on one server: N Jupyter kernels chat with one real Ollama at the same moment.

    python benchmarks/loadtest.py                      # 30 kernels, one server, queue 2
    python benchmarks/loadtest.py --servers 2          # 30 kernels, nginx in front of two servers
    python benchmarks/loadtest.py --kernels 6 --queue 1   # what .ci/run runs

What it does, all on loopback, and all undone at the end (also on Ctrl-C or a crash):

1. Clones the folder of an existing ``scripts/local-ollama`` server (``--source``; default
   ``$OLLAMA_E2E_DIR``, else ``.ollama-local``) by hard links, once per server, and starts
   each clone on its own port with ``OLLAMA_NUM_PARALLEL`` (``--parallel``, default 1) and
   ``OLLAMA_MAX_QUEUE`` (``--queue``, default 2): a server that answers one request at a time
   and turns away (HTTP 503 "server busy") all but a couple of waiting ones, as a class
   overwhelms a real one.  With ``--servers 2`` (or ``--via-nginx``) Debian's nginx runs
   the shipped ``examples/nginx/ollama-classroom.conf`` in front of them.
2. Starts N ipykernels (jupyter_client) with ``OLLAMA_HOST`` (the server, or nginx's
   ``/ollama`` URL) and ``OLLAMA_MAGIC_MODEL`` (``--model``) in their environment, as a hub
   gives every student, loads the extension in each, and waits until all are ready.  Then
   every kernel runs, at the same moment, a notebook of ``--turns`` (3) chained
   ``%%generate`` cells in one thread (no ``-m``), each storing its result (``-o``); a
   last cell reports each result's request context, context and token counts.
3. Prints: kernels, turns, failures (with their messages), busy answers (HTTP 503 counted
   in the servers' or nginx's logs), retries (the results' ``busy_retries``, and the
   "server busy: retry" lines the cells showed as they updated), conversations intact,
   p50/p95/max latency per turn (from sending the cell to the kernel's reply, as a student
   waits), the model's own time per answer, and which server answered how many turns.

A conversation is intact when each turn continued the previous one: turn k's request
carried exactly turn k-1's returned context, and the server's ``prompt_eval_count`` grew
by at least that context's length (so the server really read it).  Exit status 1 when a
turn failed or a conversation broke (the targets: zero failures, every conversation
intact), 2 when the set-up failed; the figures are printed either way.

Every process it starts (servers, nginx, kernels) is remembered by its PID and ended by it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.servers import (  # noqa: E402
    Nginx,
    OllamaServer,
    ServerError,
    end_process,
    private_ollamas,
    running_nginx,
)

PROMPTS = ("hi", "and then?", "thanks")
#: The line the magic shows while it waits out a busy server, e.g. "server busy: retry 2 of 6 in 1.6 s".
BUSY_LINE = re.compile(r"(?:server busy|rate limited): retry (\d+) of (\d+)")


# -- one kernel ----------------------------------------------------------------------------


@dataclass
class Turn:
    """One ``%%generate`` cell as a student saw it."""

    index: int
    seconds: float = math.nan
    error: str | None = None
    retries_seen: int = 0
    facts: dict[str, Any] | None = None


@dataclass
class Student:
    """One kernel: its PID, its turns, and whether its conversation held together."""

    number: int
    pid: int | None = None
    turns: list[Turn] = field(default_factory=list)
    setup_error: str | None = None

    def broken_link(self) -> str | None:
        """Why the conversation is not intact (None when it is)."""
        return next(self._problems(), None)

    def _problems(self) -> Iterator[str]:
        if self.setup_error:
            yield self.setup_error
        facts = [t.facts for t in self.turns]
        if not facts or any(f is None for f in facts):
            yield "a turn has no result"
            return
        previous: dict[str, Any] | None = None
        for k, f in enumerate(facts, start=1):
            assert f is not None
            sent = f["request_context"] or []
            if previous is None and sent:
                yield "turn 1 was sent a context: it did not start a fresh conversation"
            if previous is not None:
                if sent != previous["context"]:
                    yield f"turn {k} was not sent turn {k - 1}'s context"
                # The server evaluated the whole context plus the new prompt: it read the context.
                if not f["prompt_eval_count"] > max(len(sent), previous["prompt_eval_count"]):
                    yield (
                        f"turn {k}'s prompt_eval_count {f['prompt_eval_count']} is not above the context's "
                        f"{len(sent)} tokens and turn {k - 1}'s {previous['prompt_eval_count']}"
                    )
            if not f["context"]:
                yield f"turn {k} returned no context"
            previous = f


def runner_threads(args: argparse.Namespace) -> int | None:
    """Threads per model runner: ``--num-thread``, else 1 with several servers, else Ollama's default."""
    return args.num_thread if args.num_thread is not None else (1 if args.servers > 1 else None)


def cell_flags(args: argparse.Namespace) -> str:
    """The options every turn's cell gets.

    Several servers on this one machine each run a model runner with llama.cpp's default of
    a thread per core: together they oversubscribe the cores, and llama.cpp's threads, which
    spin while they wait for each other, then run many times slower than one server alone.
    So with several servers each runner gets one thread (``--num-thread``), standing for a
    machine of its own, unless told otherwise.
    """
    flags = f" --busy-retries {args.busy_retries}" if args.busy_retries is not None else ""
    threads = runner_threads(args)
    if threads is not None:
        flags += f" --options '{{\"num_thread\": {threads}}}'"
    return flags


def cell_sources(turns: int, flags: str, outdir: Path, number: int) -> list[str]:
    """The notebook each kernel runs: the turns, then a cell that writes what they returned.

    The cells name no model and no host: each kernel has them in its environment
    (``OLLAMA_MAGIC_MODEL``, ``OLLAMA_HOST``), as a hub gives them to every student.
    """
    cells = [f"%%generate{flags} -o r{k}\n{PROMPTS[(k - 1) % len(PROMPTS)]}" for k in range(1, turns + 1)]
    names = ", ".join(f"'r{k}'" for k in range(1, turns + 1))
    cells.append(
        "import json as _json\n"
        "_facts = []\n"
        f"for _name in ({names},):\n"
        "    _r = globals().get(_name)\n"
        "    _facts.append(None if _r is None else {\n"
        "        'request_context': (_r.request or {}).get('context'),\n"
        "        'context': _r.context,\n"
        "        'prompt_eval_count': _r.stats.prompt_eval_count,\n"
        "        'eval_count': _r.stats.eval_count,\n"
        "        'compute_ns': (_r.stats.prompt_eval_duration or 0) + (_r.stats.eval_duration or 0),\n"
        "        'text': _r.text,\n"
        "        'busy_retries': getattr(_r, 'busy_retries', None),\n"
        "    })\n"
        f"with open({str(outdir / f'student-{number}.json')!r}, 'w') as _f:\n"
        "    _json.dump(_facts, _f)\n"
    )
    return cells


def output_text(msg: dict[str, Any]) -> str:
    """The text a frontend would show for one iopub message (stream, display, error)."""
    content = msg.get("content", {})
    kind = msg.get("msg_type")
    if kind == "stream":
        return str(content.get("text", ""))
    if kind in ("display_data", "update_display_data", "execute_result"):
        return str(content.get("data", {}).get("text/plain", ""))
    if kind == "error":
        return f"{content.get('ename')}: {content.get('evalue')}"
    return ""


async def run_cell(kc: Any, code: str, timeout: float) -> tuple[float, str | None, list[str]]:
    """Execute one cell; return (seconds to the reply, the error line or None, every text shown)."""
    shown: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        text = output_text(msg)
        if text:
            shown.append(text)
        if msg.get("msg_type") == "error":
            errors.append(text)

    started = time.monotonic()
    reply = await kc.execute_interactive(code, output_hook=hook, timeout=timeout, store_history=True)
    seconds = time.monotonic() - started
    if reply["content"].get("status") != "ok" and not errors:
        c = reply["content"]
        errors.append(f"{c.get('ename', 'error')}: {c.get('evalue', c.get('status'))}")
    return seconds, (errors[0] if errors else None), shown


def retries_in(shown: Sequence[str]) -> int:
    """Distinct "server busy: retry k of n" lines among everything a cell showed."""
    return len({m.group(0) for text in shown for m in BUSY_LINE.finditer(text)})


# -- the class -----------------------------------------------------------------------------


@dataclass
class ClassRun:
    students: list[Student]
    wall: float
    busy_answers: int
    answered_by: Counter[str]


async def run_class(n: int, turns: int, model: str, host: str, flags: str, workdir: Path, pids: list[int]) -> ClassRun:
    from jupyter_client.manager import AsyncKernelManager

    # The kernels import ollama_magic from the caller's PYTHONPATH first (to measure a modified
    # copy), else the installed package, else this checkout.
    path = [p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p]
    env = dict(os.environ, OLLAMA_HOST=host, PYTHONPATH=os.pathsep.join(path))
    env["OLLAMA_MAGIC_MODEL"] = model
    students = [Student(i + 1) for i in range(n)]
    managers = [AsyncKernelManager(kernel_name="python3") for _ in students]
    clients: list[Any] = [None] * n
    kernel_dir = workdir / "kernels"
    kernel_dir.mkdir()

    async def start(i: int) -> None:
        km = managers[i]
        # The kernel's own messages (e.g. jupyter's "running over TCP" warning) go to a file.
        with (kernel_dir / f"kernel-{i + 1}.log").open("wb") as log:
            await km.start_kernel(cwd=str(kernel_dir), env=env, stdout=log, stderr=log)
        students[i].pid = km.provisioner.pid if km.provisioner else None
        if students[i].pid:
            pids.append(students[i].pid)
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=300)
        clients[i] = kc
        _, error, shown = await run_cell(kc, "%load_ext ollama_magic\nimport ollama_magic\nollama_magic.__file__", 300)
        if error:
            students[i].setup_error = f"%load_ext failed: {error}"
        elif i == 0:
            print(f"# the kernels use {shown[-1] if shown else '?'}", file=sys.stderr, flush=True)

    async def notebook(i: int) -> None:
        student, kc = students[i], clients[i]
        if kc is None or student.setup_error:
            return
        *turn_cells, report = cell_sources(turns, flags, workdir, student.number)
        for k, code in enumerate(turn_cells, start=1):
            seconds, error, shown = await run_cell(kc, code, timeout=1800)
            student.turns.append(Turn(k, seconds, error, retries_in(shown)))
        _, error, _ = await run_cell(kc, report, timeout=120)
        if error:
            student.setup_error = f"the report cell failed: {error}"
            return
        facts = json.loads((workdir / f"student-{student.number}.json").read_text())
        for turn, f in zip(student.turns, facts, strict=True):
            turn.facts = f

    try:
        # Kernels start a few at a time: 30 at once on two cores only makes each slower.
        gate = asyncio.Semaphore(max(1, os.cpu_count() or 1) * 2)

        async def gated_start(i: int) -> None:
            async with gate:
                try:
                    await start(i)
                except Exception as exc:  # a kernel that cannot start is a failure, not a crash
                    students[i].setup_error = f"kernel did not start: {type(exc).__name__}: {exc}"

        await asyncio.gather(*(gated_start(i) for i in range(n)))
        ready = sum(1 for s in students if not s.setup_error)
        print(f"{ready} of {n} kernels ready; the class starts now", file=sys.stderr, flush=True)
        started = time.monotonic()
        await asyncio.gather(*(notebook(i) for i in range(n)))
        wall = time.monotonic() - started
    finally:
        for kc in clients:
            if kc is not None:
                kc.stop_channels()

        async def shutdown(km: AsyncKernelManager) -> None:
            with contextlib.suppress(Exception):
                if km.has_kernel:
                    await asyncio.wait_for(km.shutdown_kernel(now=True), 20)

        await asyncio.gather(*(shutdown(km) for km in managers))
    return ClassRun(students, wall, 0, Counter())


# -- servers -------------------------------------------------------------------------------


def default_source() -> Path | None:
    for candidate in (os.environ.get("OLLAMA_E2E_DIR"), os.environ.get("OLLAMA_LOCAL_DIR"), REPO / ".ollama-local"):
        if candidate and (Path(candidate) / "models").is_dir() and (Path(candidate) / "mdl").is_dir():
            return Path(candidate)
    return None


def server_settings(server: OllamaServer) -> str:
    """OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE as the server itself logged them."""
    found = re.findall(r'msg="server config" env="map\[(.*?)\]"', server.log.read_text(errors="replace"))
    env = dict(kv.split(":", 1) for kv in found[-1].split() if ":" in kv) if found else {}
    return (
        f"OLLAMA_NUM_PARALLEL={env.get('OLLAMA_NUM_PARALLEL', '?')} OLLAMA_MAX_QUEUE={env.get('OLLAMA_MAX_QUEUE', '?')}"
    )


@contextlib.contextmanager
def classroom(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, list[OllamaServer], Nginx | None]]:
    source = args.source or default_source()
    if source is None:
        raise ServerError(
            "no scripts/local-ollama server folder to clone: run `scripts/local-ollama start` "
            "(folder .ollama-local) or pass --source DIR"
        )
    env = {"OLLAMA_NUM_PARALLEL": str(args.parallel), "OLLAMA_MAX_QUEUE": str(args.queue)}
    with private_ollamas(Path(source), workdir, args.servers, env) as servers:
        if args.servers > 1 or args.via_nginx:
            with running_nginx(workdir / "nginx", [s.host for s in servers]) as proxy:
                yield proxy.host, servers, proxy
        else:
            yield servers[0].host, servers, None


# -- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of the values; nan when there are none."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(args: argparse.Namespace, run: ClassRun, where: str) -> bool:
    students = run.students
    turns = [t for s in students for t in s.turns]
    expected = args.kernels * args.turns
    failures = [t.error for t in turns if t.error] + [s.setup_error for s in students if s.setup_error and not s.turns]
    missing = expected - len(turns)
    broken = {s.number: why for s in students if (why := s.broken_link())}
    retries_seen = sum(t.retries_seen for t in turns)
    counted = [t.facts.get("busy_retries") for t in turns if t.facts]
    retries = str(sum(c for c in counted if c is not None)) if any(c is not None for c in counted) else "n/a"
    print(f"\n## Load test: {args.kernels} kernels x {args.turns} turns, {where}\n")
    print(
        table(
            [
                "kernels",
                "turns done",
                "failures",
                "busy answers (HTTP 503)",
                "retries (results' busy_retries)",
                "retry lines shown in cells",
                "conversations intact",
                "class took",
            ],
            [
                [
                    args.kernels,
                    f"{len(turns) - sum(1 for t in turns if t.error)} of {expected}",
                    len(failures) + missing if missing > 0 else len(failures),
                    run.busy_answers,
                    retries,
                    retries_seen,
                    f"{args.kernels - len(broken)} of {args.kernels}",
                    f"{run.wall:.1f} s",
                ]
            ],
        )
    )
    rows = []
    for k in range(1, args.turns + 1):
        seconds = [t.seconds for t in turns if t.index == k and not t.error]
        rows.append([f"turn {k}", len(seconds), *(f"{percentile(seconds, q):.2f} s" for q in (50, 95, 100))])
    every = [t.seconds for t in turns if not t.error]
    rows.append(["all turns", len(every), *(f"{percentile(every, q):.2f} s" for q in (50, 95, 100))])
    print("\nLatency of a turn, from sending the cell to the kernel's reply (retries included):\n")
    print(table(["", "answered", "p50", "p95", "max"], rows))
    compute = [t.facts["compute_ns"] / 1e9 for t in turns if t.facts and t.facts.get("compute_ns")]
    if compute:
        print(
            f"\nThe model's own work per answer (prompt_eval_duration + eval_duration): median "
            f"{statistics.median(compute):.2f} s, max {max(compute):.2f} s; the rest of a turn is waiting."
        )
    print(f"Load average of this machine (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if run.answered_by:
        print("\nTurns answered by each server (nginx's access log, $upstream_addr):\n")
        print(table(["server", "answers (HTTP 200)"], sorted(run.answered_by.items())))
    if failures or missing > 0:
        print("\nFailures:\n")
        for message, count in Counter(failures).most_common():
            print(f"- {count} x {message}")
        if missing > 0:
            print(f"- {missing} turns never ran (their kernel failed first)")
    if broken:
        print("\nBroken conversations:\n")
        for number, why in sorted(broken.items()):
            print(f"- kernel {number}: {why}")
    met = not failures and missing <= 0 and not broken
    print(f"\nTargets: zero failures, every conversation intact: {'met' if met else 'MISSED'}")
    return met


def count_answers(servers: list[OllamaServer], offsets: list[int], proxy: Nginx | None) -> tuple[int, Counter[str]]:
    """HTTP 503 answers to /api/generate during the run, and the 200s per upstream (via nginx)."""
    if proxy is not None:
        entries = [e for e in proxy.log_entries() if e["path"].endswith("/api/generate")]
        busy = sum(1 for e in entries if e["status"] == "503")
        return busy, Counter(e["upstream"] for e in entries if e["status"] == "200")
    busy = 0
    for server, offset in zip(servers, offsets, strict=True):
        busy += sum(1 for status in server.requests_logged(server.log_since(offset)) if status == 503)
    return busy, Counter()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kernels", type=int, default=30, help="students, one ipykernel each (default 30)")
    parser.add_argument("--turns", type=int, default=3, help="chained %%%%generate cells per kernel (default 3)")
    parser.add_argument("--servers", type=int, default=1, help="Ollama servers; more than 1 puts nginx in front")
    parser.add_argument("--via-nginx", action="store_true", help="go through nginx even with one server")
    parser.add_argument("--parallel", type=int, default=1, help="OLLAMA_NUM_PARALLEL of each server (default 1)")
    parser.add_argument("--queue", type=int, default=2, help="OLLAMA_MAX_QUEUE of each server (default 2)")
    parser.add_argument("--model", default=os.environ.get("OLLAMA_E2E_MODEL", "tiny"), help="model (default tiny)")
    parser.add_argument("--busy-retries", type=int, default=None, help="pass --busy-retries N to every cell")
    parser.add_argument(
        "--num-thread",
        type=int,
        default=None,
        help="threads per model runner (default: 1 with --servers 2 or more, each standing for a machine of its own)",
    )
    parser.add_argument("--source", type=Path, default=None, help="a scripts/local-ollama folder to clone")
    args = parser.parse_args(argv)
    if args.kernels < 1 or args.turns < 1 or args.servers < 1:
        parser.error("--kernels, --turns and --servers must be at least 1")

    # SIGTERM unwinds like Ctrl-C, so that the finally blocks stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = Path(tempfile.mkdtemp(prefix="ollama-loadtest-"))
    kernel_pids: list[int] = []
    try:
        with classroom(args, workdir) as (host, servers, proxy):
            where = (
                f"nginx (examples/nginx/ollama-classroom.conf) in front of {len(servers)} servers"
                if proxy
                else "one server"
            )
            settings = "; ".join(f"{s.host}: {server_settings(s)}" for s in servers)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"# servers: {settings}; OLLAMA_HOST={host}; load average {load}", file=sys.stderr, flush=True)
            offsets = [s.log.stat().st_size for s in servers]
            run = asyncio.run(
                run_class(args.kernels, args.turns, args.model, host, cell_flags(args), workdir, kernel_pids)
            )
            run.busy_answers, run.answered_by = count_answers(servers, offsets, proxy)
            threads = runner_threads(args)
            per_runner = f", num_thread {threads} per model runner" if threads is not None else ""
            met = report(args, run, f"{where}, {server_settings(servers[0])}{per_runner}")
    except ServerError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadtest: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    finally:
        for pid in kernel_pids:  # kernels the managers did not end
            end_process(pid, b"ipykernel", grace=5)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
