"""The streaming hot path alone, in CPU time: ``python benchmarks/hot_path.py [--against PATH]``.

What every streamed line costs inside the package, with no network and no display:
``client.iter_ndjson`` (splitting blocks into lines, ``_decode_line``) and the loop of
``generation._stream_one``, over 20,000 Ollama-like lines delivered one block per line,
as Ollama's chunked responses arrive.  CPU time (``time.process_time``), best and median
of many runs: on a busy machine wall-clock figures swing by 2x, CPU time much less.

``--against PATH`` loads a second copy of the package (a git worktree of another commit,
e.g. ``git worktree add /tmp/base main``) in the same process and interleaves the runs,
so both see the same machine: the way to show that a change to the hot path costs
nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

N = 20_000
RUNS = 40


def load(name: str, root: Path) -> tuple[ModuleType, ModuleType]:
    """Import the package under ``root`` as ``name`` (so two copies can live side by side)."""
    package = root / "ollama_magic"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # The engine moved into ``engine/`` (issue 21); a baseline checkout may be older.
    engine = f"{name}.engine" if (package / "engine").is_dir() else name
    return importlib.import_module(f"{engine}.client"), importlib.import_module(f"{engine}.generation")


def lines() -> list[bytes]:
    chunk = {"model": "bench", "created_at": "2026-11-26T12:00:00Z", "response": "word ", "done": False}
    done = {"model": "bench", "response": "", "done": True, "done_reason": "stop", "context": list(range(500))}
    return [(json.dumps(chunk) + "\n").encode()] * N + [(json.dumps({**done, "eval_count": N}) + "\n").encode()]


def run_once(client: ModuleType, generation: ModuleType, body: list[bytes]) -> float:
    class Raw:
        chunked = True

        def stream(self, amt: int, decode_content: bool = True) -> Any:
            return iter(body)

    class Response:
        raw = Raw()

        def close(self) -> None:
            pass

    class Client:
        base_url = "http://bench"

        def generate_stream(self, payload: dict[str, Any]) -> Any:
            return client.iter_ndjson(Response(), self.base_url)

    start = time.process_time()
    result = generation._stream_one(Client(), {"model": "bench"}, None)
    spent = time.process_time() - start
    assert len(result.text) == 5 * N
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another copy of the repository to compare with")
    args = parser.parse_args()
    versions = {"this copy": load("om_this", Path(__file__).resolve().parent.parent)}
    if args.against:
        versions[f"{args.against}"] = load("om_against", args.against.resolve())
    body = lines()
    times: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(RUNS):
        for name, (client, generation) in versions.items():
            times[name].append(run_once(client, generation, body))
    print(f"Hot path, {N:,} lines one block each, CPU time over {RUNS} interleaved runs:\n")
    print("| package | best | median | lines/s (best) |")
    print("|---|---:|---:|---:|")
    for name, spent in times.items():
        spent.sort()
        best, median = spent[0], spent[len(spent) // 2]
        print(f"| {name} | {best * 1000:.1f} ms | {median * 1000:.1f} ms | {N / best:,.0f} |")


if __name__ == "__main__":
    main()
