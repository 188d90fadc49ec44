"""Credentials, host URLs and servers that are not (quite) Ollama, against a fake server.

The real TLS proxy (nginx with a self-signed CA, basic auth and a bearer token) is in
tests/e2e/test_access_e2e.py; here are the faults and the rules a real server cannot show.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from ollama_magic import OllamaClient, OllamaConnectionError, OllamaResponseError, generate
from ollama_magic.cli import main as cli_main
from ollama_magic.engine.auth import api_key_allowed
from ollama_magic.engine.host import HostError, parse
from ollama_magic.widgets.panel import GeneratePanel

from .conftest import FakeOllama, notebook_like, run

SECRET = "s3cret-Pa55"
TOKEN = "tok-9f8e7d6c"
KEY = "key-0a1b2c3d"


def seen_by(ip: Any, capsys: Any, cell: str, *, ok: bool) -> str:
    capsys.readouterr()
    outcome = run(ip, cell)
    assert outcome.success is ok, outcome
    captured = capsys.readouterr()
    return captured.out + captured.err


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert "Traceback" not in text and len(lines) == 1, text
    return lines[0]


# -- headers ------------------------------------------------------------------------------


def test_configured_headers_go_with_every_request(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    tags: list[dict[str, str]] = []

    def tags_handler(request: Request) -> Response:
        tags.append(dict(request.headers))
        return Response(json.dumps({"models": []}), mimetype="application/json")

    fake.server.expect_request("/api/tags").respond_with_handler(tags_handler)
    ip.run_line_magic("config", f"GenerateMagics.headers = {{'Authorization': 'Bearer {TOKEN}', 'X-Class': 'bio101'}}")
    fake.reply()
    out = seen_by(ip, capsys, "%%generate -m tiny -o r\nHi", ok=True)
    assert fake.headers[-1]["Authorization"] == f"Bearer {TOKEN}"
    assert fake.headers[-1]["X-Class"] == "bio101"
    out += seen_by(ip, capsys, "%ollama list", ok=True)
    assert tags[-1]["Authorization"] == f"Bearer {TOKEN}"
    result = ip.user_ns["r"]
    for shown in (out, repr(result), str(result.request), json.dumps(result.request)):
        assert TOKEN not in shown


def test_generate_takes_headers(fake: FakeOllama) -> None:
    fake.reply()
    result = generate("hi", "tiny", host=fake.host, headers={"X-Token": TOKEN})
    assert fake.headers[-1]["X-Token"] == TOKEN
    assert TOKEN not in repr(result) and TOKEN not in json.dumps(result.request)


def test_a_bad_header_setting_is_one_line_and_sends_nothing(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    ip.run_line_magic("config", "GenerateMagics.headers = {'Bad Name': 'x'}")
    line = one_line(seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=False))
    assert line == "UsageError: 'Bad Name' is not a valid HTTP header name."
    assert fake.requests == []


def test_headers_do_not_follow_a_redirect_to_another_server(fake: FakeOllama) -> None:
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        seen: list[dict[str, str]] = []

        def record(request: Request) -> Response:
            seen.append(dict(request.headers))
            return Response(json.dumps({"version": "0.9.3"}), mimetype="application/json")

        other.expect_request("/api/version").respond_with_handler(record)
        fake.server.expect_request("/api/version").respond_with_response(
            Response(status=302, headers={"Location": f"http://localhost:{other.port}/api/version"})
        )
        client = OllamaClient(fake.host, 10, headers={"X-Token": TOKEN, "Authorization": f"Bearer {TOKEN}"})
        assert client.version() == "0.9.3"
        assert seen and "X-Token" not in seen[0] and "Authorization" not in seen[0]
        assert TOKEN not in repr(client)
    finally:
        other.stop()


# -- credentials in the URL ------------------------------------------------------------------


def test_credentials_in_the_url_are_basic_auth_and_shown_redacted(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    host = f"http://alice:{SECRET}@{fake.host}"
    fake.reply()
    out = seen_by(ip, capsys, f"%%generate -m tiny --host {host} -o r\nHi", ok=True)
    assert fake.headers[-1]["Authorization"] == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    fake.server.expect_request("/api/version").respond_with_json({"version": "0.9.3"})
    ip.run_line_magic("config", f"GenerateMagics.host = {host!r}")
    version = seen_by(ip, capsys, "%ollama version", ok=True)
    assert f"Ollama server 0.9.3 at http://alice:***@{fake.host}" in version
    fake.error(500, "boom")
    failed = one_line(seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=False))
    assert failed == "OllamaResponseError: Ollama answered HTTP 500: boom"
    for shown in (out, version, failed, repr(ip.user_ns["r"]), json.dumps(ip.user_ns["r"].request)):
        assert SECRET not in shown


def test_an_unreachable_server_with_a_password_is_shown_redacted(ip: Any, capsys: Any) -> None:
    from .test_failures import free_port

    port = free_port()
    line = one_line(seen_by(ip, capsys, f"%generate -m tiny --host http://bob:{SECRET}@127.0.0.1:{port} Hi", ok=False))
    assert line.startswith(
        f"OllamaConnectionError: Could not reach Ollama at http://bob:***@127.0.0.1:{port} (from --host): "
    )
    assert SECRET not in line


def test_ollama_host_with_a_password_and_a_bad_port_is_one_redacted_line(
    ip: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ip.run_line_magic("config", "GenerateMagics.host = ''")
    monkeypatch.setenv("OLLAMA_HOST", f"http://alice:{SECRET}@127.0.0.1:99999")
    line = one_line(seen_by(ip, capsys, "%generate -m tiny Hi", ok=False))
    assert line == (
        "HostError: OLLAMA_HOST 'http://alice:***@127.0.0.1:99999' has an invalid port "
        "(it must be a number from 1 to 65535)."
    )
    assert SECRET not in one_line(seen_by(ip, capsys, "%ollama list", ok=False))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("http://", "The Ollama host 'http://' names no server: write e.g. 'http://127.0.0.1:11434'."),
        ("https://:8443", "The Ollama host 'https://:8443' names no server: write e.g. 'http://127.0.0.1:11434'."),
        ("http://h:1/ollama?token=abc", "The Ollama host 'http://h:1/ollama?…' has a query string"),
        ("http://h:1/ollama#x", "The Ollama host 'http://h:1/ollama#…' has a '#fragment'"),
        ("ftp://h", "The Ollama host 'ftp://h' uses ftp://: Ollama is reached over http:// or https://."),
    ],
)
def test_host_urls_that_cannot_work_are_a_usage_error(
    ip: Any, fake: FakeOllama, capsys: Any, host: str, expected: str
) -> None:
    line = one_line(seen_by(ip, capsys, f"%generate -m tiny --host '{host}' Hi", ok=False))
    assert line.startswith(f"UsageError: {expected}")
    assert fake.requests == []


QUERY_HOST = "http://127.0.0.1:11434/?token=" + TOKEN


@pytest.mark.parametrize(
    "cell",
    ["%generate -m tiny Hi", "%ollama version", "%ollama list", "%ollama ps", "%ollama pull tiny"],
)
def test_a_token_in_the_host_query_string_is_never_echoed(
    ip: Any, fake: FakeOllama, capsys: Any, monkeypatch: Any, cell: str
) -> None:
    """A query string is where people put tokens: the refusal shows it as ``?…``."""
    ip.run_line_magic("config", "GenerateMagics.host = ''")
    monkeypatch.setenv("OLLAMA_HOST", QUERY_HOST)
    with notebook_like(ip) as shell:
        capsys.readouterr()
        run(shell, cell)
        captured = capsys.readouterr()
        seen = captured.out + captured.err + json.dumps(shell.publisher.messages, default=str)
    assert TOKEN not in seen
    assert "?…" in seen
    assert fake.requests == []


def test_a_token_in_the_host_query_string_is_not_shown_by_the_panel(monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", QUERY_HOST)
    panel = GeneratePanel(model="tiny")
    assert "has a query string" in panel.status.value
    assert TOKEN not in panel.status.value + repr(panel.widget)


def test_a_token_in_the_host_query_string_is_not_echoed_by_the_cli(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", QUERY_HOST)
    assert cli_main(["generate", "--model", "tiny", "--prompt", "Hi"]) != 0
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert "OLLAMA_HOST 'http://127.0.0.1:11434/?…' has a query string" in captured.err


def test_a_query_string_from_python_is_a_clear_error() -> None:
    with pytest.raises(HostError, match="query string"):
        generate("hi", "tiny", host="http://127.0.0.1:9/?x=1")


def test_the_parsed_host_keeps_the_password_out_of_its_repr() -> None:
    host = parse(f"https://u:{SECRET}@hub.example.edu/ollama/")
    assert host.url == "https://hub.example.edu:443/ollama"
    assert host.shown == "https://u:***@hub.example.edu:443/ollama"
    assert SECRET not in repr(host) and SECRET not in str(host)
    assert repr(OllamaClient(f"https://u:{SECRET}@h")) == "OllamaClient('https://u:***@h:443')"


# -- OLLAMA_API_KEY --------------------------------------------------------------------------


def test_the_api_key_goes_to_ollama_com_over_https_only() -> None:
    assert api_key_allowed(parse("https://ollama.com"))
    assert not api_key_allowed(parse("http://ollama.com"))
    assert not api_key_allowed(parse("https://ollama.com.evil.example"))
    assert not api_key_allowed(parse("127.0.0.1:11434"))


def test_the_api_key_is_not_sent_to_other_hosts_unless_opted_in(
    ip: Any, fake: FakeOllama, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", KEY)
    monkeypatch.delenv("OLLAMA_API_KEY_HOSTS", raising=False)
    fake.reply()
    seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=True)
    assert "Authorization" not in fake.headers[-1]  # the official client would have sent it
    # Opted in by environment (name:port)...
    monkeypatch.setenv("OLLAMA_API_KEY_HOSTS", f"other.example, {fake.host}")
    fake.reply()
    out = seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=True)
    assert fake.headers[-1]["Authorization"] == f"Bearer {KEY}"
    # ...another port of the same name is another server: no key.
    monkeypatch.setenv("OLLAMA_API_KEY_HOSTS", "127.0.0.1:1")
    fake.reply()
    seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=True)
    assert "Authorization" not in fake.headers[-1]
    # ...or by the setting (a bare name: any port).
    monkeypatch.delenv("OLLAMA_API_KEY_HOSTS")
    ip.run_line_magic("config", "GenerateMagics.api_key_hosts = ['127.0.0.1']")
    fake.reply()
    out += seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=True)
    assert fake.headers[-1]["Authorization"] == f"Bearer {KEY}"
    # Configured headers win over the key.
    ip.run_line_magic("config", f"GenerateMagics.headers = {{'authorization': 'Bearer {TOKEN}'}}")
    fake.reply()
    seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=True)
    assert fake.headers[-1]["Authorization"] == f"Bearer {TOKEN}"
    assert KEY not in out


# -- TLS settings ----------------------------------------------------------------------------


def test_a_ca_bundle_that_does_not_exist_is_one_line(ip: Any, fake: FakeOllama, capsys: Any) -> None:
    ip.run_line_magic("config", "GenerateMagics.verify = '/nowhere/ca.pem'")
    line = one_line(seen_by(ip, capsys, "%%generate -m tiny\nHi", ok=False))
    assert line == "UsageError: The CA bundle '/nowhere/ca.pem' (GenerateMagics.verify) does not exist."
    assert fake.requests == []


# -- servers that are not (quite) Ollama ------------------------------------------------------


def test_a_404_from_something_that_is_not_ollama(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/generate").respond_with_data("Not Found", status=404)
    httpserver.expect_request("/api/version").respond_with_data("Not Found", status=404)
    with pytest.raises(OllamaResponseError) as info:
        generate("hi", "tiny", host=f"127.0.0.1:{httpserver.port}")
    assert str(info.value) == (
        f"http://127.0.0.1:{httpserver.port} does not look like an Ollama server (HTTP 404 for /api/generate): "
        "check the host and path."
    )


def test_a_404_from_an_ollama_without_the_endpoint(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/ps").respond_with_data("404 page not found", status=404)
    httpserver.expect_request("/api/version").respond_with_json({"version": "0.1.0"})
    with pytest.raises(OllamaResponseError, match=r"\(version 0.1.0\) has no /api/ps \(HTTP 404: 404 page not found\)"):
        OllamaClient(f"127.0.0.1:{httpserver.port}").ps()


def test_ollamas_own_missing_model_is_still_the_pull_hint(fake: FakeOllama) -> None:
    fake.error(404, "model 'nope' not found")
    with pytest.raises(OllamaResponseError, match="Model 'nope' is not on the Ollama server"):
        generate("hi", "nope", host=fake.host)


PROXY_PAGE = (
    "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n"
    + "<hr><center>nginx/1.22.1</center>\n" * 100
    + "</body>\n</html>\n"
)


def test_a_proxys_html_error_page_is_one_line_with_its_title(ip: Any, capsys: Any) -> None:
    proxy = HTTPServer(host="127.0.0.1", port=0)
    proxy.start()
    try:
        proxy.expect_request("/api/generate").respond_with_data(PROXY_PAGE, status=502, content_type="text/html")
        line = one_line(seen_by(ip, capsys, f"%generate -m tiny --host 127.0.0.1:{proxy.port} Hi", ok=False))
    finally:
        proxy.stop()
    assert line == (
        f"OllamaResponseError: http://127.0.0.1:{proxy.port} answered HTTP 502 BAD GATEWAY for /api/generate "
        "with a web page titled '502 Bad Gateway', not Ollama's API: the server behind it may be down or "
        "restarting; try again in a moment."
    )


def test_jupyters_own_403_page_says_check_the_host(httpserver: HTTPServer) -> None:
    page = "<!DOCTYPE HTML>\n<html><head><title>Jupyter Server</title></head><body>" + "x" * 50_000 + "</body></html>"
    httpserver.expect_request("/api/generate").respond_with_data(page, status=403, content_type="text/html")
    with pytest.raises(OllamaResponseError) as info:
        generate("hi", "tiny", host=f"127.0.0.1:{httpserver.port}")
    message = str(info.value)
    assert "HTTP 403 FORBIDDEN for /api/generate with a web page titled 'Jupyter Server'" in message
    assert message.endswith("check the host and path (and the credentials).") and len(message) < 250


def test_a_500_whose_json_is_a_list(fake: FakeOllama) -> None:
    fake.answers.append(lambda body: Response(json.dumps(["a", "list"]), status=500, mimetype="application/json"))
    with pytest.raises(OllamaResponseError, match=r'^Ollama answered HTTP 500: \["a", "list"\]$'):
        generate("hi", "tiny", host=fake.host)


def test_a_huge_error_body_is_cut_short(fake: FakeOllama) -> None:
    fake.answers.append(lambda body: Response("E" * 5_000_000, status=500, mimetype="text/plain"))
    with pytest.raises(OllamaResponseError) as info:
        generate("hi", "tiny", host=fake.host)
    assert len(str(info.value)) <= 250 and str(info.value).endswith("…")


def test_management_json_of_the_wrong_shape(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/tags").respond_with_json(["not", "a", "dict"])
    with pytest.raises(OllamaResponseError, match=r"JSON of an unexpected shape \(list\): it does not look like"):
        OllamaClient(f"127.0.0.1:{httpserver.port}").tags()


def test_a_web_page_where_json_was_expected(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/version").respond_with_data(PROXY_PAGE, content_type="text/html")
    with pytest.raises(OllamaResponseError, match="answered /api/version with something that is not JSON"):
        OllamaClient(f"127.0.0.1:{httpserver.port}").version()


def test_a_path_prefix_works_for_every_endpoint(httpserver: HTTPServer) -> None:
    for path in ("version", "tags", "ps"):
        httpserver.expect_request(f"/ollama/api/{path}").respond_with_json({"version": "0.9.3", "models": []})
    httpserver.expect_request("/ollama/api/show").respond_with_json({"details": {}})
    httpserver.expect_request("/ollama/api/pull").respond_with_data('{"status":"success"}\n')
    client = OllamaClient(f"http://127.0.0.1:{httpserver.port}/ollama/")
    assert client.version() == "0.9.3" and client.tags() == [] and client.ps() == []
    assert client.show("tiny") == {"details": {}}
    assert list(client.pull("tiny")) == [{"status": "success"}]


def test_a_connection_error_names_the_hint_for_python(monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_failures import free_port

    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(OllamaConnectionError, match="OLLAMA_HOST environment variable"):
        generate("hi", "tiny")


# -- %ollama wait ------------------------------------------------------------------------------


def test_ollama_wait_until_a_late_server_answers(nb: Any, capsys: Any) -> None:
    import threading

    from .test_failures import free_port

    port = free_port()
    late = HTTPServer(host="127.0.0.1", port=port)
    late.expect_request("/api/version").respond_with_json({"version": "0.9.3"})
    starter = threading.Timer(1.5, late.start)
    starter.start()
    try:
        nb.run_line_magic("config", f"GenerateMagics.host = '127.0.0.1:{port}'")
        capsys.readouterr()
        assert run(nb, "%ollama wait 30").success
    finally:
        starter.join()
        late.stop()
    shown = [m["data"]["text/plain"] for m in nb.publisher.messages if "data" in m]
    assert shown[0].startswith(f"waiting for Ollama at http://127.0.0.1:{port}… ")
    assert shown[0].endswith("(connection refused)")
    assert all(m["update"] for m in nb.publisher.messages[1:])  # one line, updated in place
    assert shown[-1].startswith(f"Ollama 0.9.3 is up at http://127.0.0.1:{port} (waited ")


def test_ollama_wait_gives_up_with_one_line(ip: Any, capsys: Any) -> None:
    from .test_failures import free_port

    port = free_port()
    ip.run_line_magic("config", f"GenerateMagics.host = '127.0.0.1:{port}'")
    seen = seen_by(ip, capsys, "%ollama wait 1.5", ok=False)
    status, error = seen.strip().rsplit("\n", 1)
    assert f"No answer from Ollama at http://127.0.0.1:{port} after " in status.split("\r")[-1]
    assert error == (
        f"OllamaConnectionError: Ollama at http://127.0.0.1:{port} did not answer within 1.5 s (connection refused): "
        "check that it is starting (its log), or wait longer with %ollama wait SECONDS."
    )


def test_ollama_wait_fails_at_once_on_something_that_is_not_ollama(ip: Any, capsys: Any) -> None:
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        other.expect_request("/api/version").respond_with_data("nope", status=404)
        ip.run_line_magic("config", f"GenerateMagics.host = '127.0.0.1:{other.port}'")
        seen = seen_by(ip, capsys, "%ollama wait 60", ok=False)
    finally:
        other.stop()
    assert "does not look like an Ollama server (HTTP 404 for /api/version)" in seen


def test_ollama_wait_checks_its_argument(ip: Any, capsys: Any) -> None:
    line = one_line(seen_by(ip, capsys, "%ollama wait soon", ok=False))
    assert line == "UsageError: Usage: %ollama wait [SECONDS] (a positive number of seconds, not 'soon')"


def test_a_huge_error_body_from_a_management_endpoint_is_not_downloaded(httpserver: HTTPServer) -> None:
    sent = [0]

    def body() -> Any:
        for _ in range(400):  # 100 MB, if anyone read it all
            sent[0] += 1
            yield b"E" * 256 * 1024

    httpserver.expect_request("/api/tags").respond_with_handler(
        lambda request: Response(body(), status=500, mimetype="text/plain")
    )
    with pytest.raises(OllamaResponseError) as info:
        OllamaClient(f"127.0.0.1:{httpserver.port}", 30).tags()
    assert len(str(info.value)) <= 250
    assert sent[0] < 100  # what the socket buffers took, far from the 400 pieces
