"""A real Jupyter server (JupyterLab, Notebook 7 or Voilà) started from this interpreter, for
the browser tests and benchmarks.

One implementation, used by the ``lab`` and ``notebook7`` fixtures (tests/browser/conftest.py),
the Voilà test and benchmarks/real_model_cost.py (which pins it to one CPU with ``taskset``).  No pytest here:
a server that does not come up raises :class:`LabError` with the end of its log.

JupyterLab runs as ``python -m jupyterlab`` on a free loopback port with a token, in a
temporary root folder, with its config, data, runtime, settings, workspace and IPython
folders all temporary too (nothing from ``~`` leaks in).  Its environment carries
``OLLAMA_HOST`` when a host is given, so kernels reach that server.  It is stopped by its
PID at the end, and so are the kernels it started, should any outlive it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

LAB_START_TIMEOUT = 60.0


class LabError(RuntimeError):
    """JupyterLab exited or did not answer in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab server: where it is and how to open a notebook in it."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def notebook_url(self, name: str) -> str:
        # ``reset`` starts from an empty workspace, so notebooks of earlier tests do not reopen.
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """End the kernels of all sessions (a test's notebook), through the server's REST API."""
        headers = {"Authorization": f"token {self.token}"}
        with contextlib.suppress(requests.RequestException, ValueError):
            for session in requests.get(f"{self.url}/api/sessions", headers=headers, timeout=10).json():
                requests.delete(f"{self.url}/api/sessions/{session['id']}", headers=headers, timeout=30)

    def kernel_pids(self) -> list[int]:
        """The PIDs of the kernels this server started (its child processes running ipykernel)."""
        pids = []
        for child in _children(self.process.pid):
            with contextlib.suppress(Exception):
                if any("ipykernel" in part for part in child.cmdline()):
                    pids.append(int(child.pid))
        return pids

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _children(pid: int) -> list[Any]:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing, or the process is gone
        return []


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server we started (SIGTERM, then SIGKILL), then any of its kernels still alive."""
    children = _children(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for child in children:  # psutil.Process checks the PID was not reused before signalling
        with contextlib.suppress(Exception):
            child.terminate()
            child.wait(timeout=5)
        with contextlib.suppress(Exception):
            child.kill()


def start_jupyter(
    base: Path,
    module: str,
    *args: str,
    ollama_host: str | None = None,
    what: str = "jupyter lab",
    env_extra: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> tuple[Lab, Callable[[], None]]:
    """Start ``python -m module`` (``jupyterlab``, ``notebook`` for Notebook 7, or ``voila``) on a
    free loopback port with a token, every Jupyter and IPython folder under ``base`` (an empty
    folder), ``ollama_host`` as its kernels' ``OLLAMA_HOST`` (None removes it, so tests that
    need a real server skip and the others name ``--host``).  ``prefix`` goes before the
    command, e.g. ``["taskset", "-c", "0"]`` to pin the server and, by inheritance, its kernels.

    Returns the server and a function that stops it (by its PID, kernels after it); raises
    :class:`LabError` with the end of its log if it does not come up."""
    root = base / "root"
    root.mkdir()
    dirs = {
        name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython", "home-cache")
    }
    for path in dirs.values():
        path.mkdir()
    # No "get notified about official Jupyter news?" toast over the notebook, no update check.
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        IPYTHONDIR=str(dirs["ipython"]),
        XDG_CACHE_HOME=str(dirs["home-cache"]),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_CONFIG_PATH", None)
    if ollama_host:
        env["OLLAMA_HOST"] = ollama_host
    else:
        env.pop("OLLAMA_HOST", None)
    env.update(env_extra or {})

    port = free_port()
    token = secrets.token_hex(16)
    log = base / "server.log"
    command = [*(prefix or []), sys.executable, "-m", module, *args, "--no-browser", f"--port={port}"]
    command.append(f"--IdentityProvider.token={token}")
    if module == "voila":
        command += ["--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]
    else:
        command += ["--ip=127.0.0.1", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if module == "jupyterlab":
        command += [
            "--LabApp.news_url=None",  # never ask the internet for news or updates
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    if module != "voila" and hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root; Jupyter refuses root without it
    with log.open("wb") as out:
        # With a prefix such as taskset, the command execs Python: the PID stays the server's.
        process = subprocess.Popen(command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, process=process, log=log)
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise LabError(f"{what} exited with {process.returncode}:\n{server.log_tail()}")
            if module == "voila":  # any GET there runs the notebook: its log says when it listens
                if f"127.0.0.1:{port}" in server.log_tail(20_000):
                    break
            else:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{server.url}/api/status", params={"token": token}, timeout=2).ok:
                        break
            if time.monotonic() > deadline:
                raise LabError(f"{what} did not answer within {LAB_START_TIMEOUT:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        stop(process)
        raise
    return server, lambda: stop(process)


@contextlib.contextmanager
def running_lab(base: Path, ollama_host: str | None, prefix: list[str] | None = None) -> Iterator[Lab]:
    """A JupyterLab server under ``base`` (see :func:`start_jupyter`), stopped on exit whatever happens."""
    server, stop_server = start_jupyter(base, "jupyterlab", ollama_host=ollama_host, prefix=prefix)
    try:
        yield server
    finally:
        stop_server()
