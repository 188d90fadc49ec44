"""A remote Ollama as universities run it: nginx with TLS from the institution's own CA, a
path prefix, basic auth and a bearer token, in front of the real Ollama.

The test makes a CA and a server certificate with ``openssl``, starts Debian's nginx as an
ordinary process with its own configuration on a loopback port, and proxies to the real
Ollama (``OLLAMA_E2E_HOST``).  Then it executes a notebook with nbclient that uses a
secret header, a password in the URL and an API key, and greps the saved file for them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from ollama_magic import OllamaClient, OllamaResponseError, generate

from .conftest import SHORT
from .support import HEY, REPO, assert_one_line, failing_cell, free_port, run, url, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl")
TOKEN = "bearer-7Hq2Zx9Lw"
USER, PASSWORD = "alice", "pw-Kd83jX0q"
API_KEY = "apikey-Mn4Rt8Vb2"


@dataclass
class Proxy:
    port: int
    ca: Path
    folder: Path

    def url(self, prefix: str, userinfo: str = "") -> str:
        return f"https://{userinfo}127.0.0.1:{self.port}/{prefix}"


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def make_certificates(folder: Path) -> None:
    """A CA ("Example University CA") and a certificate for 127.0.0.1/localhost signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Example University CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=folder)  # fmt: skip


def nginx_config(folder: Path, port: int, upstream: str, dead: int) -> str:
    hashed = subprocess.run(
        [OPENSSL, "passwd", "-apr1", PASSWORD], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    (folder / "htpasswd").write_text(f"{USER}:{hashed}\n")
    proxy = f"""
            proxy_pass http://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Host localhost;
            proxy_buffering off;
            proxy_read_timeout 300s;"""
    # Run as root (as CI does), nginx would start its workers as "nobody", who cannot read
    # the htpasswd file in pytest's private temporary folder: keep them as this user.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/tmp/body;
    proxy_temp_path {folder}/tmp/proxy;
    fastcgi_temp_path {folder}/tmp/fastcgi;
    uwsgi_temp_path {folder}/tmp/uwsgi;
    scgi_temp_path {folder}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {folder}/server.pem;
        ssl_certificate_key {folder}/server.key;
        location /ollama/ {{{proxy}
        }}
        location /basic/ {{
            auth_basic "class";
            auth_basic_user_file {folder}/htpasswd;{proxy}
        }}
        location /bearer/ {{
            if ($http_authorization !~ "^Bearer ({TOKEN}|{API_KEY})$") {{ return 401; }}{proxy}
        }}
        location /down/ {{
            proxy_pass http://127.0.0.1:{dead}/;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def proxy(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if not os.path.exists(NGINX) or OPENSSL is None:
        pytest.skip("needs nginx and openssl (apt-get install -y nginx openssl)")
    folder = tmp_path_factory.mktemp("nginx")
    (folder / "tmp").mkdir()
    make_certificates(folder)
    port = free_port()
    upstream = url(real_host).removeprefix("http://")
    (folder / "nginx.conf").write_text(nginx_config(folder, port, upstream, free_port()))
    process = subprocess.Popen(
        [NGINX, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        up = wait_until(lambda: _answers(f"https://127.0.0.1:{port}/ollama/api/version", folder / "ca.pem"), timeout=20)
        assert up, (folder / "error.log").read_text() if (folder / "error.log").exists() else "nginx did not start"
        yield Proxy(port, folder / "ca.pem", folder)
    finally:
        process.send_signal(signal.SIGTERM)  # our own nginx, by its PID
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(address: str, ca: Path) -> bool:
    try:
        return requests.get(address, verify=str(ca), timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "OLLAMA_API_KEY", "OLLAMA_API_KEY_HOSTS"):
        monkeypatch.delenv(name, raising=False)


# -- TLS and the path prefix ---------------------------------------------------------------


def test_every_endpoint_works_under_a_path_prefix_over_tls_with_the_institutions_ca(proxy: Proxy) -> None:
    client = OllamaClient(proxy.url("ollama"), 60, verify=str(proxy.ca))
    assert client.version() == "0.9.3"
    assert SHORT in {m["name"].split(":")[0] for m in client.tags()}
    assert isinstance(client.ps(), list)
    assert "details" in client.show(SHORT)
    result = generate("hi", SHORT, host=proxy.url("ollama/"), verify=str(proxy.ca))
    assert result.text == HEY and result.complete
    # /api/pull needs the model registry (no internet here); the request reaches Ollama
    # through the prefix all the same: its error comes from Ollama, not a 404 from nginx.
    with pytest.raises(OllamaResponseError) as info:
        list(client.pull("no-such-model-for-sure"))
    assert "does not look like an Ollama server" not in str(info.value)
    # nginx writes a request's line once the request is over on its side too, which for the
    # pull (an error inside a streamed answer) can be a moment after the client has read it.
    access_log = proxy.folder / "access.log"
    assert wait_until(lambda: "/ollama/api/pull HTTP/1.1" in access_log.read_text(), timeout=15)
    log = access_log.read_text()
    for path in ("version", "tags", "ps", "show", "generate", "pull"):
        assert f"/ollama/api/{path} HTTP/1.1" in log


def test_an_untrusted_certificate_is_one_line_saying_how_to_trust_it(proxy: Proxy, real_ip: Any, capsys: Any) -> None:
    line = assert_one_line(failing_cell(real_ip, capsys, f"%generate -m {SHORT} --host {proxy.url('ollama')} hi"))
    assert line.startswith(
        f"OllamaConnectionError: Could not make a trusted TLS connection to https://127.0.0.1:{proxy.port}/ollama"
    )
    assert "GenerateMagics.verify = '/path/to/ca.pem'" in line and "REQUESTS_CA_BUNDLE" in line


def test_requests_ca_bundle_is_honoured(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.ca))
    assert OllamaClient(proxy.url("ollama")).version() == "0.9.3"


def test_verify_off_works_and_warns_once(proxy: Proxy, real_ip: Any, capsys: Any) -> None:
    real_ip.run_line_magic("config", "GenerateMagics.verify = False")
    real_ip.run_line_magic("config", f"GenerateMagics.host = {proxy.url('ollama')!r}")
    capsys.readouterr()
    for _ in range(2):
        assert run(real_ip, f"%generate -m {SHORT} hi").success
    err = capsys.readouterr().err
    warning = f"Warning: TLS certificate checks are off for https://127.0.0.1:{proxy.port}/ollama"
    assert err.count(warning) == 1
    assert "InsecureRequestWarning" not in err


# -- credentials ------------------------------------------------------------------------------


def test_basic_auth_from_the_url(proxy: Proxy) -> None:
    good = proxy.url("basic", f"{USER}:{PASSWORD}@")
    assert OllamaClient(good, 30, verify=str(proxy.ca)).version() == "0.9.3"
    with pytest.raises(OllamaResponseError) as info:
        OllamaClient(proxy.url("basic", f"{USER}:wrong@"), 30, verify=str(proxy.ca)).version()
    message = str(info.value)
    assert message.startswith(f"https://{USER}:***@127.0.0.1:{proxy.port}/basic answered HTTP 401 Unauthorized")
    assert "wrong" not in message and len(message.splitlines()) == 1


def test_a_bearer_token_in_headers(proxy: Proxy) -> None:
    address = proxy.url("bearer")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert generate("hi", SHORT, host=address, verify=str(proxy.ca), headers=headers).text == HEY
    with pytest.raises(
        OllamaResponseError,
        match="HTTP 401 Unauthorized for /api/generate with a web page titled '401 Authorization Required'",
    ):
        generate("hi", SHORT, host=address, verify=str(proxy.ca))


def test_the_api_key_reaches_the_proxy_only_when_it_is_named(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy checks the same header the key is sent in; the key is the token here.
    monkeypatch.setenv("OLLAMA_API_KEY", TOKEN)
    with pytest.raises(OllamaResponseError, match="HTTP 401"):
        OllamaClient(proxy.url("bearer"), 30, verify=str(proxy.ca)).version()
    monkeypatch.setenv("OLLAMA_API_KEY_HOSTS", f"127.0.0.1:{proxy.port}")
    assert OllamaClient(proxy.url("bearer"), 30, verify=str(proxy.ca)).version() == "0.9.3"


def test_a_proxys_502_page_is_one_line_with_its_title(proxy: Proxy) -> None:
    with pytest.raises(OllamaResponseError) as info:
        generate("hi", SHORT, host=proxy.url("down"), verify=str(proxy.ca), busy_retries=0)
    assert str(info.value) == (
        f"https://127.0.0.1:{proxy.port}/down answered HTTP 502 Bad Gateway for /api/generate with a web page "
        "titled '502 Bad Gateway', not Ollama's API: the server behind it may be down or restarting; "
        "try again in a moment."
    )


# -- secrets never saved ----------------------------------------------------------------------

SECRET_CELLS = [
    "%load_ext ollama_magic",
    "%config GenerateMagics.verify = {ca!r}\n%config GenerateMagics.headers = {{'Authorization': 'Bearer {token}'}}",
    "%%generate -m {model} --host {bearer} -o r1\nhi",
    "print(r1, repr(r1), r1.request)",
    "%ollama version",
    "%config GenerateMagics.headers = {{}}\n%config GenerateMagics.host = {basic!r}",
    "%%generate -m {model} -o r2\nhi",
    "%ollama list",
    "%ollama version",
    "%ollama wait 5",
    "%%generate -m nope\nhi",
    "%config GenerateMagics.host = {wrong!r}\n%ollama version",
    "import os\nos.environ['OLLAMA_HOST'] = {bad_port!r}\n%config GenerateMagics.host = ''\n%generate -m {model} hi",
    "os.environ['OLLAMA_API_KEY'] = {key!r}\nos.environ['OLLAMA_API_KEY_HOSTS'] = '127.0.0.1'\n"
    "%config GenerateMagics.host = {bearer!r}\n%generate -m {model} -o r3 hi",
    "%ollama ps",
    "print(r2, r3, r3.request)\nfrom ollama_magic import OllamaClient\nOllamaClient({basic!r})",
]


def test_no_secret_is_ever_saved_in_the_notebook(proxy: Proxy, tmp_path: Path) -> None:
    values = {
        "ca": str(proxy.ca),
        "token": TOKEN,
        "model": SHORT,
        "bearer": proxy.url("bearer"),
        "basic": proxy.url("basic", f"{USER}:{PASSWORD}@"),
        "wrong": proxy.url("basic", f"{USER}:{PASSWORD}x@"),
        "bad_port": f"http://{USER}:{PASSWORD}@127.0.0.1:99999",
        "key": API_KEY,
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source.format(**values)) for source in SECRET_CELLS]
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "e2e", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        mp.delenv("OLLAMA_HOST", raising=False)
        client = NotebookClient(
            nb, kernel_name="python3", timeout=120, allow_errors=True, resources={"metadata": {"path": str(REPO)}}
        )
        client.execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    # The code cells hold the secrets (that is where the person typed them); every output must not.
    outputs = json.dumps([cell.outputs for cell in nbformat.read(path, as_version=4).cells])
    for secret in (TOKEN, PASSWORD, API_KEY, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in outputs, secret
    # ...and the cells did what they should, so the test saw real outputs.
    assert HEY in json.dumps(nb.cells[2].outputs) and HEY in json.dumps(nb.cells[6].outputs)
    assert f"https://{USER}:***@127.0.0.1:{proxy.port}/basic" in json.dumps(nb.cells[8].outputs)
    assert "Ollama 0.9.3 is up" in json.dumps(nb.cells[9].outputs)
    assert "HTTP 401" in json.dumps(nb.cells[11].outputs)
    assert f"'http://{USER}:***@127.0.0.1:99999' has an invalid port" in json.dumps(nb.cells[12].outputs)
    assert HEY in json.dumps(nb.cells[13].outputs)
