"""Real servers that a test or a benchmark starts, and always stops, itself.

- :class:`OllamaServer`: a private ``scripts/local-ollama`` server in a folder cloned from
  the shared one (:func:`clone_server_folder`: hard links for the binaries, copies for what
  the server writes), on its own port, with its own environment (``OLLAMA_NUM_PARALLEL``,
  ``OLLAMA_MAX_QUEUE``...), so nothing is provisioned again and the shared server is never
  touched.
- :class:`Nginx`: Debian's nginx run as an ordinary process (``nginx -c CONF -p PREFIX -g
  'daemon off;'``) with the shipped ``examples/nginx/ollama-classroom.conf``, its marked
  lines filled in by :func:`render_classroom_conf` (the substitution the file documents).

Used by the end-to-end tests (tests/e2e/test_failures_e2e.py, tests/e2e/test_nginx_e2e.py)
and by benchmarks/loadtest.py; no pytest here, failures raise :class:`ServerError`.
Every process is remembered by its PID and ended by that PID, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL_OLLAMA = REPO / "scripts" / "local-ollama"
CLASSROOM_CONF = REPO / "examples" / "nginx" / "ollama-classroom.conf"
#: The path prefix the shipped configuration serves Ollama under.
PREFIX = "/ollama"


class ServerError(RuntimeError):
    """A server could not be started or stopped; the message says which and why."""


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_alive(pid: int, *words: bytes) -> bool:
    """True if ``pid`` runs and its command line contains every one of ``words``.

    Checking the command line keeps a recycled PID from being mistaken for ours.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and all(w in cmdline for w in words)


def end_process(pid: int, *words: bytes, grace: float = 10.0) -> None:
    """SIGTERM ``pid`` (if it is still the process described by ``words``), then SIGKILL after ``grace`` s."""
    if not process_alive(pid, *words):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not process_alive(pid, *words):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The PIDs of ``pid``'s child processes (from /proc; any of its threads may be the parent)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def clone_server_folder(source: Path, target: Path) -> None:
    """A second server folder: hard links for the big read-only parts, copies for the rest.

    The server and the script write into ``mdl``, ``models``, ``home`` and the pid/log files;
    those are real copies (or left out), so nothing of the shared server's folder changes.
    Where hard links are impossible (``target`` on another file system) the files are
    copied instead (~0.5 GB, slower but the same).
    """
    target.mkdir(parents=True)

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for name in ("bin", "lib", "rt"):
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, symlinks=True, copy_function=link_or_copy)
    for name in ("mdl", "models", "home"):
        shutil.copytree(source / name, target / name, symlinks=True)


@dataclass
class OllamaServer:
    """A ``scripts/local-ollama`` server in ``folder`` on ``port``, with ``env`` added to its environment."""

    folder: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    def _script(self, command: str, *extra: str) -> str:
        done = subprocess.run(
            [str(LOCAL_OLLAMA), command, "--dir", str(self.folder), *extra],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**os.environ, **self.env},
        )
        if done.returncode != 0:
            raise ServerError(f"local-ollama {command} --dir {self.folder} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> None:
        out = self._script("start", "--port", str(self.port))
        if out.strip().splitlines()[-1] != f"OLLAMA_HOST={self.host}":
            raise ServerError(f"local-ollama start printed {out!r}, not OLLAMA_HOST={self.host}")
        self.pids.append(int((self.folder / "serve.pid").read_text().strip()))

    @property
    def pid(self) -> int:
        return self.pids[-1]

    def stop(self) -> None:
        """The script's own stop (the server, its runners, the pid file); then make sure by PID."""
        try:
            if (self.folder / "serve.pid").exists():
                self._script("stop")
        finally:
            for pid in self.pids:
                end_process(pid, b"ollama", b"serve", grace=5)

    @staticmethod
    def running(pid: int) -> bool:
        return process_alive(pid, b"ollama", b"serve")

    def log_since(self, offset: int) -> str:
        """The server's log from byte ``offset`` on (take ``log.stat().st_size`` before)."""
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def requests_logged(self, text: str, path: str = "/api/generate") -> list[int]:
        """HTTP statuses of the requests for ``path`` in ``text`` (Ollama's ``[GIN]`` lines)."""
        return [int(m) for m in re.findall(rf'^\[GIN\][^|]*\|\s*(\d{{3}})\s*\|.*"{re.escape(path)}"\s*$', text, re.M)]


@contextlib.contextmanager
def private_ollamas(
    source: Path, root: Path, count: int = 1, env: dict[str, str] | None = None
) -> Iterator[list[OllamaServer]]:
    """``count`` private servers cloned from ``source`` under ``root``; all stopped on exit, whatever happens."""
    servers: list[OllamaServer] = []
    try:
        for i in range(count):
            folder = root / f"ollama-{i + 1}"
            clone_server_folder(source, folder)
            server = OllamaServer(folder, free_port(), dict(env or {}))
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
            for pid in server.pids:
                end_process(pid, b"ollama", b"serve", grace=5)


# -- nginx ------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render_classroom_conf(text: str, listen: str, upstreams: list[str], access_log: str) -> str:
    """Fill in the lines of ``examples/nginx/ollama-classroom.conf`` marked ``# EDIT``.

    The substitution the file's header documents: ``listen`` takes ``listen`` (e.g.
    ``127.0.0.1:8080``); the ``server`` lines marked ``# EDIT: Ollama machine N`` take the
    addresses in ``upstreams``, in order (extra marked lines are dropped; more addresses than
    lines is an error); ``access_log`` takes the log path.  Everything else is used as shipped.
    """
    for marker in ("# EDIT: listen", "# EDIT: log", "# EDIT: Ollama machine 1"):
        if marker not in text:
            raise ValueError(f"the file has no line marked {marker!r}")
    machine = re.compile(r"^(\s*server\s+)[^\s;]+(.*# EDIT: Ollama machine \d+\s*)$")
    marked = [line for line in text.splitlines() if machine.match(line)]
    if len(upstreams) > len(marked):
        raise ValueError(f"{len(upstreams)} upstreams but the file has {len(marked)} marked server lines")
    addresses = iter(upstreams)
    out: list[str] = []
    for line in text.splitlines():
        found = machine.match(line)
        if found:
            address = next(addresses, None)
            if address is not None:  # a marked line with no address left is dropped
                out.append(found.group(1) + address + found.group(2))
        elif line.rstrip().endswith("# EDIT: listen"):
            out.append(re.sub(r"(listen\s+)[^;]+", lambda m: m.group(1) + listen, line, count=1))
        elif line.rstrip().endswith("# EDIT: log"):
            out.append(re.sub(r"(access_log\s+)[^\s;]+", lambda m: m.group(1) + access_log, line, count=1))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class Nginx:
    """nginx in front of ``upstreams``, serving the shipped classroom configuration on ``port``.

    All its files live in ``prefix``: the rendered example (``ollama-classroom.conf``), a
    main configuration that includes it (what Debian's /etc/nginx/nginx.conf does with
    conf.d/*.conf), the pid file, the error log and the access log with ``$upstream_addr``.
    """

    prefix: Path
    upstreams: list[str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def write_config(self) -> Path:
        self.prefix.mkdir(parents=True, exist_ok=True)
        for name in ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
            (self.prefix / name).mkdir(exist_ok=True)
        site = self.prefix / "ollama-classroom.conf"
        site.write_text(
            render_classroom_conf(
                CLASSROOM_CONF.read_text(), f"127.0.0.1:{self.port}", self.upstreams, str(self.access_log)
            )
        )
        main = self.prefix / "nginx.conf"
        # Workers run as the user that starts nginx (root in CI: nginx would otherwise
        # switch to `nobody`, who cannot enter the test's private temp folders).
        user = "user root;\n" if os.geteuid() == 0 else ""
        main.write_text(
            f"{user}worker_processes 1;\n"
            f"pid {self.prefix}/nginx.pid;\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    client_body_temp_path {self.prefix}/client_body_temp;\n"
            f"    proxy_temp_path {self.prefix}/proxy_temp;\n"
            f"    fastcgi_temp_path {self.prefix}/fastcgi_temp;\n"
            f"    uwsgi_temp_path {self.prefix}/uwsgi_temp;\n"
            f"    scgi_temp_path {self.prefix}/scgi_temp;\n"
            f"    include {site};\n"
            "}\n"
        )
        return main

    def _command(self, conf: Path) -> list[str]:
        return [NGINX, "-c", str(conf), "-p", f"{self.prefix}/", "-e", str(self.error_log)]

    def start(self, timeout: float = 20) -> None:
        if not os.path.exists(NGINX):
            raise ServerError("nginx is not installed: `apt-get install -y nginx` (.ci/run does it)")
        self.port = self.port or free_port()
        conf = self.write_config()
        check = subprocess.run([*self._command(conf), "-t"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ServerError(f"nginx -t rejected {conf}: {check.stderr[-2000:]}")
        self.process = subprocess.Popen(
            [*self._command(conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise ServerError(f"nginx exited at start ({self.process.returncode}): {err[-2000:]}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"nginx did not listen on 127.0.0.1:{self.port} within {timeout} s")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError("nginx was not started")
        return self.process.pid

    def stop(self) -> None:
        """SIGQUIT (graceful: workers finish, then the master exits), then SIGKILL; by PID."""
        if self.process is None or self.process.poll() is not None:
            return
        workers = children(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for pid in workers:  # a killed master leaves its workers behind
            end_process(pid, b"nginx", grace=2)

    def log_entries(self) -> list[dict[str, str]]:
        """The access log, one dict per request (the example's ``ollama_classroom`` format)."""
        if not self.access_log.exists():
            return []
        return [parse_access_line(line) for line in self.access_log.read_text().splitlines() if line.strip()]


#: The fields of the shipped ``log_format ollama_classroom``, in order, separated by " | ".
ACCESS_FIELDS = ("time", "client", "request", "status", "upstream", "upstream_status", "request_time")


def parse_access_line(line: str) -> dict[str, str]:
    """One access-log line of the ``ollama_classroom`` format as a dict of :data:`ACCESS_FIELDS`."""
    parts = [p.strip() for p in line.split(" | ")]
    if len(parts) != len(ACCESS_FIELDS):
        raise ValueError(f"not an ollama_classroom access-log line: {line!r}")
    entry = dict(zip(ACCESS_FIELDS, parts, strict=True))
    method, _, rest = entry["request"].partition(" ")
    entry["method"], entry["path"] = method, rest.rsplit(" ", 1)[0]
    return entry


@contextlib.contextmanager
def running_nginx(prefix: Path, upstreams: list[str]) -> Iterator[Nginx]:
    """nginx with the shipped classroom configuration in front of ``upstreams``; stopped on exit."""
    proxy = Nginx(prefix, upstreams)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
