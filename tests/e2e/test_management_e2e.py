"""``%ollama`` against a real server: the values shown are the server's own."""

from __future__ import annotations

from typing import Any

import requests

import ollama_magic
from ollama_magic.server.management import human_size

from .conftest import LONG, SHORT
from .support import assert_one_line, failing_cell, run, url


def ollama(shell: Any, capsys: Any, line: str) -> str:
    capsys.readouterr()
    result = run(shell, f"%ollama {line}")
    assert result.success, result.error_in_exec
    return capsys.readouterr().out


def rows(table: str) -> dict[str, list[str]]:
    """A table printed by %ollama, as {first column: cells}, split on runs of 2+ spaces."""
    import re

    lines = table.strip().splitlines()
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[1:])}


def test_list_shows_the_servers_models(real_ip: Any, real_host: str, capsys: Any) -> None:
    out = ollama(real_ip, capsys, "list")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "FAMILY", "PARAMETERS", "QUANTIZATION", "MODIFIED"]
    table = rows(out)
    tags = {m["name"]: m for m in requests.get(f"{url(real_host)}/api/tags", timeout=10).json()["models"]}
    for name in (f"{SHORT}:latest", f"{LONG}:latest"):
        model = tags[name]
        assert table[name] == [
            name,
            human_size(model["size"]),
            "llama",
            model["details"]["parameter_size"],
            model["details"]["quantization_level"],
            model["modified_at"][:19].replace("T", " "),
        ]


def test_ps_shows_a_loaded_model_until_when(real_ip: Any, real_host: str, capsys: Any) -> None:
    assert run(real_ip, f"%generate -m {SHORT} --no-context --quiet hi").success
    out = ollama(real_ip, capsys, "ps")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "VRAM", "UNTIL"]
    loaded = {m["name"]: m for m in requests.get(f"{url(real_host)}/api/ps", timeout=10).json()["models"]}
    row = rows(out)[f"{SHORT}:latest"]
    entry = loaded[f"{SHORT}:latest"]
    assert row == [f"{SHORT}:latest", human_size(entry["size"]), human_size(entry["size_vram"]), row[3]]
    # The table and this test each asked /api/ps: a request in between may renew the
    # keep-alive, so the two expiry times can differ by a second.
    from datetime import datetime

    shown = datetime.fromisoformat(row[3])
    asked = datetime.fromisoformat(entry["expires_at"][:19].replace("T", " "))
    assert abs((shown - asked).total_seconds()) <= 2, (row[3], entry["expires_at"])


def test_show_has_the_details_and_the_template(real_ip: Any, capsys: Any) -> None:
    out = ollama(real_ip, capsys, f"show {SHORT}")
    lines = out.splitlines()
    assert lines[0] == f"Model {SHORT}"
    assert "  family       llama" in lines
    assert "  format       gguf" in lines
    assert "  capabilities completion, insert" in lines  # "insert": the template handles .Suffix
    template = lines[lines.index("  template:") + 1 :]
    assert template == [
        "    {{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ if .System }}{{ .System }}",
        "    {{ end }}{{ .Prompt }}{{ end }}",
    ]


def test_show_of_a_missing_model_is_one_line(real_ip: Any, capsys: Any) -> None:
    line = assert_one_line(failing_cell(real_ip, capsys, "%ollama show nope"))
    assert line.startswith("ModelNotFoundError: Model 'nope' is not on the Ollama server")


def test_version_names_both_and_the_url(real_ip: Any, real_host: str, capsys: Any) -> None:
    out = ollama(real_ip, capsys, "version")
    assert out.splitlines() == [
        f"ollama_magic {ollama_magic.__version__}",
        f"Ollama server 0.9.3 at {url(real_host)}",
    ]


def test_threads_and_reset(real_ip: Any, capsys: Any) -> None:
    assert "No conversation threads yet." in ollama(real_ip, capsys, "threads")
    run(real_ip, f"%generate -m {SHORT} hi")
    run(real_ip, f"%generate -m {SHORT} -o b hi")
    run(real_ip, f"%generate -m {LONG} --thread other --num-predict 3 -o c hi")
    table = rows(ollama(real_ip, capsys, "threads"))
    b, c = real_ip.user_ns["b"], real_ip.user_ns["c"]
    assert table["default"] == ["default", SHORT, "2", str(len(b.context))]
    assert table["other"] == ["other", LONG, "1", str(len(c.context))]
    assert ollama(real_ip, capsys, "reset other").strip() == "Forgot thread(s): other"
    assert "other" not in rows(ollama(real_ip, capsys, "threads"))
    assert ollama(real_ip, capsys, "reset").strip() == "Forgot thread(s): default"
