"""A class on several machines: Debian's nginx, with the shipped configuration, in front of
two real Ollama servers, every student's host being ``http://127.0.0.1:PORT/ollama``.

The module starts (once) two private ``scripts/local-ollama`` servers cloned from the shared
one, with a class's settings, and nginx running ``examples/nginx/ollama-classroom.conf``
itself, its ``# EDIT`` lines filled in (tests/e2e/servers.py: render_classroom_conf).  Which
server answered each request is read from nginx's access log (``$upstream_addr``) and from
each server's own request log; that a server continued a conversation it never saw is read
from its token counts.  The load test through the same set-up is
``benchmarks/loadtest.py --servers 2`` (run by .ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from .conftest import LONG, SHORT
from .servers import (
    CLASSROOM_CONF,
    NGINX,
    PREFIX,
    Nginx,
    OllamaServer,
    private_ollamas,
    render_classroom_conf,
    running_nginx,
)
from .support import HEY, assert_one_line, ollama_server_dir, raw_generate, run, wait_until

#: The settings the docs (docs/teaching.md) give for a class, as the servers here run with.
CLASS_SETTINGS = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "3", "OLLAMA_KEEP_ALIVE": "10m"}


@dataclass
class Classroom:
    servers: list[OllamaServer]
    proxy: Nginx

    def mark(self) -> int:
        """The number of access-log entries before the requests that follow.

        nginx writes an entry when it has closed a request, which can be a moment after the
        client read the last line; so counting the lines now could count a previous test's
        request too late.  A request of our own, with a unique query, is written after
        those: its line is the mark.
        """
        token = f"mark={uuid.uuid4().hex}"
        requests.get(f"{self.proxy.host}/api/version?{token}", timeout=10).raise_for_status()

        def position() -> int | None:
            for i, entry in enumerate(self.proxy.log_entries()):
                if token in entry["request"]:
                    return i + 1
            return None

        assert wait_until(lambda: position() is not None, timeout=10)
        return position() or 0

    def logged(self, since: int, endpoint: str, expected: int = 1) -> list[dict[str, str]]:
        """nginx's access-log entries for ``endpoint`` (e.g. /api/generate) from entry ``since`` on.

        nginx writes an entry once it has closed the request, which can be a moment after
        the client read the last line: wait (a little) for ``expected`` entries.
        """

        def entries() -> list[dict[str, str]]:
            return [e for e in self.proxy.log_entries()[since:] if e["path"] == f"{PREFIX}{endpoint}"]

        wait_until(lambda: len(entries()) >= expected, timeout=10)
        return entries()


@pytest.fixture(scope="module")
def classroom(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Classroom]:
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed: `apt-get install -y nginx` (.ci/run installs it)")
    source = ollama_server_dir(real_host)
    if source is None:
        pytest.skip("the folder of the server at OLLAMA_E2E_HOST is unknown: set OLLAMA_E2E_DIR to it")
    root = tmp_path_factory.mktemp("classroom")
    try:
        with (
            private_ollamas(source, root, 2, CLASS_SETTINGS) as servers,
            running_nginx(root / "nginx", [s.host for s in servers]) as proxy,
        ):
            yield Classroom(servers, proxy)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def student(real_ip: Any, classroom: Classroom, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real IPython shell whose OLLAMA_HOST is the proxy, as a student's kernel on the hub."""
    monkeypatch.setenv("OLLAMA_HOST", classroom.proxy.host)
    return real_ip


def ollama(shell: Any, capsys: Any, line: str) -> str:
    capsys.readouterr()
    result = run(shell, f"%ollama {line}")
    assert result.success, result.error_in_exec
    return capsys.readouterr().out


# -- the shipped file ------------------------------------------------------------------


def test_the_example_runs_as_shipped_but_for_its_marked_lines() -> None:
    shipped = CLASSROOM_CONF.read_text().splitlines()
    rendered = render_classroom_conf(
        "\n".join(shipped), "127.0.0.1:8080", ["127.0.0.1:1111", "127.0.0.1:2222"], "/tmp/x.log"
    ).splitlines()
    assert len(rendered) == len(shipped)
    changed = [(a, b) for a, b in zip(shipped, rendered, strict=True) if a != b]
    assert [b.split("#")[0].strip() for _, b in changed] == [
        "server 127.0.0.1:1111;",
        "server 127.0.0.1:2222;",
        "listen 127.0.0.1:8080;",
        "access_log /tmp/x.log ollama_classroom;",
    ]
    assert all("# EDIT" in a for a, _ in changed)
    text = "\n".join(shipped)
    for directive in ("location /ollama/ {", "proxy_pass http://ollama_class/;", "proxy_buffering off;"):
        assert directive in text
    assert int(re.search(r"proxy_read_timeout (\d+)s;", text).group(1)) >= 600  # type: ignore[union-attr]
    # One machine: the second marked line is dropped; more machines than lines is an error.
    one = render_classroom_conf("\n".join(shipped), "8080", ["127.0.0.1:1111"], "/tmp/x.log")
    assert "server 127.0.0.1:1111;" in one and "10.0.0.12" not in one
    with pytest.raises(ValueError, match="3 upstreams"):
        render_classroom_conf("\n".join(shipped), "8080", ["a:1", "b:2", "c:3"], "/tmp/x.log")


def test_nginx_runs_the_example_and_the_servers_run_with_the_class_settings(classroom: Classroom) -> None:
    site = (classroom.proxy.prefix / "ollama-classroom.conf").read_text()
    assert site == render_classroom_conf(
        CLASSROOM_CONF.read_text(),
        f"127.0.0.1:{classroom.proxy.port}",
        [s.host for s in classroom.servers],
        str(classroom.proxy.access_log),
    )
    assert requests.get(f"{classroom.proxy.host}/api/version", timeout=10).json() == {"version": "0.9.3"}
    for server in classroom.servers:
        config = re.findall(r'msg="server config" env="map\[(.*?)\]"', server.log.read_text())[-1]
        assert "OLLAMA_NUM_PARALLEL:1 " in config
        assert "OLLAMA_MAX_QUEUE:3 " in config
        assert "OLLAMA_KEEP_ALIVE:10m0s " in config


# -- every command through the proxy ---------------------------------------------------


def test_every_ollama_command_works_through_the_proxy(student: Any, classroom: Classroom, capsys: Any) -> None:
    mark = classroom.mark()
    listed = ollama(student, capsys, "list")
    assert listed.splitlines()[0].split()[0] == "NAME"
    assert {f"{SHORT}:latest", f"{LONG}:latest"} <= {line.split()[0] for line in listed.splitlines()[1:]}
    run(student, f"%generate -m {SHORT} --no-context --quiet hi")
    ps = ollama(student, capsys, "ps")
    # `%ollama ps` shows the machine that answered it (a balancer has no merged view):
    # the very models that machine reports.
    machine = classroom.logged(mark, "/api/ps")[-1]["upstream"]
    loaded = [m["name"] for m in requests.get(f"http://{machine}/api/ps", timeout=10).json()["models"]]
    if loaded:
        assert ps.splitlines()[0].split() == ["NAME", "SIZE", "VRAM", "UNTIL"]
        assert [line.split()[0] for line in ps.splitlines()[1:]] == loaded
    else:
        assert ps.startswith("No model"), ps
    shown = ollama(student, capsys, f"show {SHORT}").splitlines()
    assert shown[0] == f"Model {SHORT}" and "  family       llama" in shown
    assert ollama(student, capsys, "version").splitlines()[1] == f"Ollama server 0.9.3 at {classroom.proxy.host}"
    # Pulling reaches a server through the proxy and streams its answer back; this machine
    # has no internet (and `tiny` is in no registry), so the server's own registry error
    # comes back, and since the server has `tiny` already, the cell says so in one calm line
    # (Ollama's words reached us, not nginx's 404 or 502, which would be an error).
    seen = ollama(student, capsys, f"pull {SHORT}")
    line = assert_one_line(seen.rsplit("\r", 1)[-1])
    assert f"{SHORT} is on the server already" in line and "registry" in line, line
    for method, endpoint in [
        ("GET", "/api/tags"),
        ("POST", "/api/generate"),
        ("GET", "/api/ps"),
        ("POST", "/api/show"),
        ("GET", "/api/version"),
        ("POST", "/api/pull"),
    ]:
        entry = classroom.logged(mark, endpoint)[-1]
        assert (entry["method"], entry["status"]) == (method, "200"), entry
    upstreams = {e["upstream"] for e in classroom.proxy.log_entries()[mark:]}
    assert upstreams <= {s.host for s in classroom.servers}


def test_generate_through_the_proxy_streams_the_whole_answer(student: Any, classroom: Classroom) -> None:
    assert run(student, f"%%generate -m {SHORT} --thread proxied -o r\nhi").success
    r = student.user_ns["r"]
    assert r.text == HEY and r.done_reason == "stop" and r.context
    assert run(student, f"%%generate -m {LONG} --num-predict 40 --thread proxied-long -o r\nhi").success
    long = student.user_ns["r"]
    assert long.text == ("Hey now! " * 10)[: len(long.text)] and long.stats.eval_count == 40


# -- a conversation that moves between machines -----------------------------------------


def test_a_conversation_continues_on_the_other_server(student: Any, classroom: Classroom, real_host: str) -> None:
    mark = classroom.mark()  # also waits for earlier requests to be done and logged
    offsets = [s.log.stat().st_size for s in classroom.servers]
    prompts = ["hi", "and then?", "thanks"]
    results = []
    for k, prompt in enumerate(prompts, start=1):
        assert run(student, f"%%generate -m {SHORT} --thread moving -o t{k}\n{prompt}").success
        results.append(student.user_ns[f"t{k}"])
    # Which server answered each turn, by nginx's log: least_conn with ties taken in turn
    # sends consecutive turns to different machines.
    answered_by = [e["upstream"] for e in classroom.logged(mark, "/api/generate", 3)]
    assert len(answered_by) == 3
    assert answered_by[0] != answered_by[1] != answered_by[2]
    # ... and by the servers' own logs: each logged exactly the turns nginx says it got.
    by_server = {s.host: s.requests_logged(s.log_since(o)) for s, o in zip(classroom.servers, offsets, strict=True)}
    assert {host: len(statuses) for host, statuses in by_server.items()} == {
        s.host: answered_by.count(s.host) for s in classroom.servers
    }
    # Each turn was sent the previous turn's context, and the server that had never seen the
    # conversation evaluated all of it: its prompt_eval_count is exactly what a server that
    # is given the same context counts (the shared one, asked directly), and exceeds the
    # context's length.
    for k in (2, 3):
        before, now = results[k - 2], results[k - 1]
        assert now.request["context"] == before.context
        reference = raw_generate(real_host, model=SHORT, prompt=prompts[k - 1], context=before.context)
        assert now.stats.prompt_eval_count == reference["prompt_eval_count"] > len(before.context)
        assert now.context == reference["context"]
        assert now.text == HEY


# -- a student's kernel configured by a file, as a hub would --------------------------


def test_a_kernel_set_up_by_an_ipython_config_file_works_through_the_proxy(
    classroom: Classroom, tmp_path: Path
) -> None:
    """What docs/teaching.md gives a hub: an IPython profile that loads the extension, points
    it at the proxy with a default model and headers, so that a student's first cell is
    already a ``%%generate``.  (That headers are sent is tests/e2e/test_access_e2e.py's.)"""
    ipython_dir = tmp_path / "ipython"
    (ipython_dir / "profile_default").mkdir(parents=True)
    (ipython_dir / "profile_default" / "ipython_config.py").write_text(
        "c = get_config()  # noqa\n"
        "c.InteractiveShellApp.extensions = ['ollama_magic']\n"
        f"c.GenerateMagics.host = {classroom.proxy.host!r}\n"
        f"c.GenerateMagics.model = {SHORT!r}\n"
        "c.GenerateMagics.headers = {'Authorization': 'Bearer class-token'}\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%%generate -o r\nhi"),
        nbformat.v4.new_code_cell(
            "import json\n"
            "magics = get_ipython().magics_manager.registry['GenerateMagics']\n"
            "print(json.dumps({'text': r.text, 'context': r.context, 'headers': sorted(magics.headers)}))"
        ),
    ]
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    env["IPYTHONDIR"] = str(ipython_dir)
    path = (os.environ.get("PYTHONPATH", ""), str(CLASSROOM_CONF.parents[2]))
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    mark = classroom.mark()
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    printed = json.loads(nb.cells[1].outputs[0]["text"])
    assert printed["text"] == HEY and printed["context"]
    assert printed["headers"] == ["Authorization"]  # the file's headers are the magics' own
    assert "class-token" not in json.dumps(nb.cells[0].outputs)  # and never shown
    assert [e["status"] for e in classroom.logged(mark, "/api/generate")] == ["200"]
