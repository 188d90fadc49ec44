"""Every option of the magic line reaches /api/generate as the exact JSON Ollama expects."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from .conftest import FakeOllama, run

CASES: list[tuple[str, dict[str, Any]]] = [
    ("-m tiny", {"model": "tiny", "prompt": "Hello", "stream": True}),
    ("--model tiny --system 'Be terse.'", {"system": "Be terse."}),
    ("-m tiny --template '{{ .Prompt }}'", {"template": "{{ .Prompt }}"}),
    ("-m tiny --suffix 'return x'", {"suffix": "return x"}),
    ("-m tiny --raw", {"raw": True}),
    ("-m tiny --format json", {"format": "json"}),
    ("-m tiny --think", {"think": True}),
    ("-m tiny --think high", {"think": "high"}),
    ('-m tiny --options \'{"num_ctx": 8192, "min_p": 0.05}\'', {"options": {"num_ctx": 8192, "min_p": 0.05}}),
    ("-m tiny -t 0.2", {"options": {"temperature": 0.2}}),
    ("-m tiny --temperature 0 --seed 42", {"options": {"temperature": 0.0, "seed": 42}}),
    (
        "-m tiny --num-predict 3 --top-k 5 --top-p 0.9 --num-ctx 512",
        {"options": {"num_predict": 3, "top_k": 5, "top_p": 0.9, "num_ctx": 512}},
    ),
    ("-m tiny --stop END '###'", {"options": {"stop": ["END", "###"]}}),
    ('-m tiny --options \'{"temperature": 1, "seed": 7}\' -t 0.5', {"options": {"temperature": 0.5, "seed": 7}}),
    ("-m tiny --no-stream", {"stream": False}),
    ("-m tiny --keep-alive 10m", {"keep_alive": "10m"}),
    ("-m tiny --keep-alive 0", {"keep_alive": 0}),
    ("-m tiny --keep-alive -1", {"keep_alive": -1}),
]


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_each_option_reaches_the_request(ip: Any, fake: FakeOllama, line: str, expected: dict[str, Any]) -> None:
    fake.reply()
    result = run(ip, f"%%generate {line}\nHello")
    assert result.success, result.error_in_exec
    sent = fake.last
    for key, value in expected.items():
        assert sent[key] == value, key
    # nothing is sent that was not asked for
    assert set(sent) <= {"model", "prompt", "stream", *expected, "context"}


def test_configured_options_merge_under_cell_options(ip: Any, fake: FakeOllama) -> None:
    run(ip, "%config GenerateMagics.options = {'temperature': 0.1, 'num_ctx': 2048}")
    run(ip, "%config GenerateMagics.keep_alive = '1h'")
    run(ip, "%config GenerateMagics.model = 'tiny'")
    fake.reply()
    assert run(ip, "%%generate --options '{\"num_ctx\": 4096}'\nHi").success
    assert fake.last["options"] == {"temperature": 0.1, "num_ctx": 4096}
    assert fake.last["keep_alive"] == "1h"
    assert fake.last["model"] == "tiny"


def test_images_from_file_and_from_variable(ip: Any, fake: FakeOllama, tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n fake")  # only the first bytes are checked (they say PNG)
    ip.user_ns["img"] = b"\xff\xd8\xff raw JPEG bytes"
    fake.reply()
    assert run(ip, f"%%generate -m tiny --images {picture} img\nDescribe").success
    assert fake.last["images"] == [
        base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode(),
        base64.b64encode(b"\xff\xd8\xff raw JPEG bytes").decode(),
    ]


def test_prompt_interpolation_from_the_namespace(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns.update(topic="tides", facts=["moon", "sun"], cfg=type("C", (), {"lang": "French"})())
    fake.reply()
    run(ip, "%%generate -m tiny\nExplain {topic} ({facts[0]}, {facts[1]}) in {cfg.lang}; keep {{braces}}.")
    assert fake.last["prompt"] == "Explain tides (moon, sun) in French; keep {braces}."


def test_no_interpolate_sends_text_verbatim(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    run(ip, '%%generate -m tiny --no-interpolate\nParse {"a": {x}}')
    assert fake.last["prompt"] == 'Parse {"a": {x}}'


def test_the_magic_line_is_not_expanded_by_ipython(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns["x"] = "EXPANDED"
    fake.reply()
    run(ip, "%%generate -m tiny --system '{x} $x'\nHi")
    assert fake.last["system"] == "{x} $x"


def test_one_line_form_keeps_quotes_and_question_mark(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(ip, '%generate -m tiny -t 0 Why\'s the "sky" blue?').success
    assert fake.last["prompt"] == 'Why\'s the "sky" blue?'
    assert fake.last["options"] == {"temperature": 0.0}


def test_one_line_form_with_list_option_ends_at_double_dash(ip: Any, fake: FakeOllama) -> None:
    fake.reply()
    assert run(ip, "%generate -m tiny --stop END -- Count to ten").success
    assert fake.last["prompt"] == "Count to ten"
    assert fake.last["options"] == {"stop": ["END"]}


def test_ollama_host_is_read_at_request_time(ip: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    run(ip, "%config GenerateMagics.host = ''")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing listens there
    assert not run(ip, "%generate -m tiny Hi").success
    monkeypatch.setenv("OLLAMA_HOST", fake.host)
    fake.reply()
    assert run(ip, "%generate -m tiny Hi").success
    assert fake.last["prompt"] == "Hi"


def test_host_option_wins(ip: Any, fake: FakeOllama) -> None:
    run(ip, "%config GenerateMagics.host = '127.0.0.1:9'")
    fake.reply()
    assert run(ip, f"%generate -m tiny --host http://{fake.host} Hi").success


@pytest.mark.parametrize(
    "prompt",
    [
        'Turn this into YAML: {"name": "Ada"}',
        'Nested: {"user": {"name": "Ada", "tags": [1, 2]}}',
        "Empty braces { } and a set {1,2} and {0}",
        "JS: function f(a) { if (a) {return {x: 1};} }",
        "Templates: {% for x in xs %} and {a b}",
        "Lone braces: { and } and }} on their own",
    ],
)
def test_json_and_code_in_a_prompt_are_sent_as_typed(ip: Any, fake: FakeOllama, prompt: str) -> None:
    fake.reply()
    assert run(ip, f"%%generate -m tiny --no-context\n{prompt}").success
    assert fake.last["prompt"] == prompt


def test_clear_placeholders_are_filled_next_to_json(ip: Any, fake: FakeOllama) -> None:
    ip.user_ns.update(name="Ada", xs=[3.14159], obj=type("O", (), {"lang": "fr"})())
    fake.reply()
    cell = 'Fill {"name": "<>"} with {name!r}, {xs[0]:.2f} in {obj.lang}; {{name}} and {{{name}}} stay.'
    assert run(ip, f"%%generate -m tiny --no-context\n{cell}").success
    assert fake.last["prompt"] == 'Fill {"name": "<>"} with \'Ada\', 3.14 in fr; {name} and {Ada} stay.'
