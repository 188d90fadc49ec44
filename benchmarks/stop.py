"""How long a stop takes: ``python benchmarks/stop.py [--runs N]``.

``generate(cancel=event)`` (what the panel's Stop button sets) must end a request within
half a second whatever the server does.  A local server goes silent (1) before sending
anything, as Ollama does while a big model loads, and (2) after part of an answer; the
time from ``event.set()`` to :class:`GenerationInterrupted` is printed, with the target.
"""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import statistics
import sys
import threading
import time
from pathlib import Path

if importlib.util.find_spec("ollama_magic") is None:  # not installed: use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ollama_magic import GenerationInterrupted, generate

TARGET = 0.5
SILENCE = 30.0


class Silent(http.server.BaseHTTPRequestHandler):
    """Answers nothing (``/loading``) or a first chunk then nothing (``/api/generate``)."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.mode == "loading":  # type: ignore[attr-defined]
            self.release.wait(SILENCE)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        line = b'{"model":"tiny","response":"Half an answer","done":false}\n'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()
        self.release.wait(SILENCE)

    def log_message(self, *args: object) -> None:
        pass


def one_stop(host: str, after: float) -> float:
    cancel = threading.Event()
    fired: list[float] = []

    def fire() -> None:
        time.sleep(after)
        fired.append(time.perf_counter())
        cancel.set()

    threading.Thread(target=fire, daemon=True).start()
    try:
        generate("Hi", "tiny", host=host, timeout=SILENCE * 2, cancel=cancel)
    except GenerationInterrupted:
        return time.perf_counter() - fired[0]
    raise RuntimeError("the generation was not interrupted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    print("| server silent | runs | median stop (s) | worst (s) | target (s) |\n|---|---|---|---|---|")
    try:
        for mode, label in (("loading", "before any byte (model loading)"), ("midway", "after part of an answer")):
            server.mode = mode  # type: ignore[attr-defined]
            times = [one_stop(host, 0.3) for _ in range(runs)]
            worst = max(times)
            mark = "" if worst <= TARGET else " MISSED"
            print(f"| {label} | {runs} | {statistics.median(times):.3f} | {worst:.3f} | {TARGET}{mark} |")
    finally:
        Silent.release.set()
        server.shutdown()


if __name__ == "__main__":
    main()
