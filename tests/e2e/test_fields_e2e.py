"""Every field of /api/generate reaches a real Ollama and is honoured where the tiny models show it.

The witness is the server's own answer, not what the client meant to send: the tiny models
tokenize one character per token, so ``prompt_eval_count`` is exactly the length of the
prompt the server's template rendered, plus 2 (see support.py).  ``tiny``'s template is
``{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ if .System }}
{{ .System }}\\n{{ end }}{{ .Prompt }}{{ end }}``.

Every cell uses ``--no-context`` unless the test is about context, so that the counts are
those of the prompt alone.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import requests

import ollama_magic
from ollama_magic import InvalidRequestError, OllamaResponseError

from .conftest import LONG, SHORT
from .support import (
    HEY,
    assert_one_line,
    failing_cell,
    free_port,
    loaded_models,
    png_bytes,
    raw_generate,
    run,
    url,
    wait_until,
)


def prompt_tokens(rendered: str) -> int:
    """What the tiny models' ``prompt_eval_count`` is for a rendered prompt (see support.py)."""
    return len(rendered) + 2


def generate_cell(shell: Any, line: str, prompt: str = "hi") -> Any:
    """Run ``%%generate LINE -o r`` with ``prompt`` as the body; return the result object."""
    shell.user_ns.pop("r", None)
    result = run(shell, f"%%generate {line} -o r\n{prompt}")
    assert result.success, result.error_in_exec
    return shell.user_ns["r"]


def test_the_baseline_the_other_tests_compare_with(real_ip: Any) -> None:
    r = generate_cell(real_ip, f"-m {SHORT} --no-context")
    assert r.text == HEY
    assert r.done_reason == "stop"
    assert r.stats.prompt_eval_count == prompt_tokens("hi") == 4
    assert r.stats.eval_count == 9  # "Hey now!" and the end token
    assert r.complete and r.context


def test_system(real_ip: Any) -> None:
    r = generate_cell(real_ip, f'-m {SHORT} --no-context --system "You are terse."')
    assert r.request["system"] == "You are terse."
    assert r.stats.prompt_eval_count == prompt_tokens("You are terse.\nhi")
    assert r.text == HEY


def test_template(real_ip: Any, real_host: str) -> None:
    # (The rendered prompt must not end in ':' or ',': the tiny models answer those with
    # '"' over and over, which Ollama 0.9.3 cuts short; see test_failures_e2e.py.)
    r = generate_cell(real_ip, f"-m {SHORT} --no-context --template 'Q: {{{{ .Prompt }}}}?'")
    assert r.request["template"] == "Q: {{ .Prompt }}?"
    assert r.stats.prompt_eval_count == prompt_tokens("Q: hi?")
    assert r.text == HEY
    # and the template's text is in the context the server returned, before the answer
    baseline = raw_generate(real_host, model=SHORT, prompt="hi")
    assert len(r.context) == len(baseline["context"]) + len("Q: ?")


def test_suffix_takes_the_templates_fill_in_the_middle_branch(real_ip: Any) -> None:
    r = generate_cell(real_ip, f"-m {SHORT} --no-context --suffix bye")
    assert r.request["suffix"] == "bye"
    assert r.stats.prompt_eval_count == prompt_tokens("<PRE> hi <SUF>bye <MID>")


def test_raw_skips_the_template_returns_no_context_and_leaves_the_thread(real_ip: Any, real_host: str) -> None:
    r1 = generate_cell(real_ip, f"-m {SHORT}")
    # With the template, the suffix would be rendered (25 tokens); raw sends "hi" as it is.
    raw = generate_cell(real_ip, f"-m {SHORT} --raw --suffix bye")
    assert raw.request["raw"] is True and "context" not in raw.request
    assert raw.stats.prompt_eval_count == prompt_tokens("hi")
    assert raw.context is None  # the server returns none for raw
    assert raw.thread is None and raw.text == HEY
    r2 = generate_cell(real_ip, f"-m {SHORT}")
    assert r2.request["context"] == r1.context  # the raw turn did not touch the thread
    reference = raw_generate(real_host, model=SHORT, prompt="hi", context=r1.context)
    assert r2.context == reference["context"]
    assert r2.stats.prompt_eval_count == reference["prompt_eval_count"]


def test_num_predict_ends_with_length_after_exactly_n_tokens(real_ip: Any) -> None:
    r = generate_cell(real_ip, f"-m {LONG} --no-context --num-predict 7")
    assert r.done_reason == "length"
    assert r.stats.eval_count == 7
    assert r.text == "Hey now"


def test_options_json_and_the_shortcut_that_wins(real_ip: Any) -> None:
    r = generate_cell(real_ip, f"""-m {LONG} --no-context --options '{{"num_predict": 3, "top_k": 1}}'""")
    assert r.request["options"] == {"num_predict": 3, "top_k": 1}
    assert (r.stats.eval_count, r.done_reason) == (3, "length")
    r = generate_cell(real_ip, f"""-m {LONG} --no-context --options '{{"num_predict": 3}}' --num-predict 5""")
    assert r.stats.eval_count == 5


def test_configured_options_are_merged_under_the_cells(real_ip: Any) -> None:
    run(real_ip, "%config GenerateMagics.options = {'num_predict': 4}")
    assert generate_cell(real_ip, f"-m {LONG} --no-context").stats.eval_count == 4
    assert generate_cell(real_ip, f"-m {LONG} --no-context --num-predict 6").stats.eval_count == 6


def test_stop_sequence(real_ip: Any) -> None:
    r = generate_cell(real_ip, f"-m {SHORT} --no-context --stop now")
    assert r.request["options"] == {"stop": ["now"]}
    assert r.text == "Hey "
    assert r.done_reason == "stop"


def test_num_ctx_truncates_a_long_prompt_to_the_window(real_ip: Any) -> None:
    long_prompt = "x" * 100
    r = generate_cell(real_ip, f"-m {SHORT} --no-context --num-ctx 32", prompt=long_prompt)
    assert r.stats.prompt_eval_count == 32 < prompt_tokens(long_prompt)


def test_seed_and_sampling_options_are_accepted_and_repeatable(real_ip: Any) -> None:
    # The tiny models are deterministic whatever the sampling, so this shows only that the
    # server accepts these options and that the same seed gives the same text.
    line = f"-m {LONG} --no-context --seed 42 -t 0.9 --top-k 40 --top-p 0.9 --num-predict 12"
    a, b = generate_cell(real_ip, line), generate_cell(real_ip, line)
    assert a.request["options"] == {"seed": 42, "temperature": 0.9, "top_k": 40, "top_p": 0.9, "num_predict": 12}
    assert a.text == b.text == "Hey now! Hey"


def test_keep_alive(real_ip: Any, real_host: str) -> None:
    generate_cell(real_ip, f"-m {SHORT} --no-context --keep-alive 1h")
    ps = requests.get(f"{url(real_host)}/api/ps", timeout=10).json()["models"]
    (entry,) = [m for m in ps if m["name"] == f"{SHORT}:latest"]
    # Go's RFC 3339 with nanoseconds: drop the fraction, keep the offset.
    expires = dt.datetime.fromisoformat(re.sub(r"\.\d+", "", entry["expires_at"]).replace("Z", "+00:00"))
    remaining = expires - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(minutes=55) < remaining <= dt.timedelta(hours=1, minutes=1)
    r = generate_cell(real_ip, f"-m {SHORT} --no-context --keep-alive 0")
    assert r.request["keep_alive"] == 0
    assert wait_until(lambda: SHORT not in loaded_models(real_host), timeout=60), loaded_models(real_host)


def test_no_stream_shows_one_final_display_with_the_same_text(real_nb: Any) -> None:
    streamed = generate_cell(real_nb, f"-m {LONG} --no-context --num-predict 60")
    real_nb.publisher.messages.clear()
    whole = generate_cell(real_nb, f"-m {LONG} --no-context --num-predict 60 --no-stream")
    assert whole.request["stream"] is False
    # No live updates: one display, complete (after the waiting line, if the answer was slow).
    messages = real_nb.publisher.messages
    *waiting, message = messages
    assert all(m["data"]["text/plain"].startswith(f"Waiting for {LONG} ") for m in waiting)
    assert message["update"] is bool(waiting)
    assert len({m["transient"]["display_id"] for m in messages}) == 1
    assert whole.text == streamed.text and whole.stats.eval_count == 60
    assert message["data"]["text/plain"].startswith(whole.text + "\n— ")
    assert "60 tokens" in message["data"]["text/plain"]


def test_images_for_a_model_without_vision_are_refused_before_anything_is_generated(
    real_ip: Any, capsys: Any, tmp_path: Any
) -> None:
    # Ollama 0.9.3 would take them, put "[img-N]" in the prompt and let the model answer as
    # if it had seen the picture: the server's own /api/show says the model cannot see.
    real_ip.user_ns["img"] = png_bytes()
    path = tmp_path / "pixel.png"
    path.write_bytes(png_bytes())
    seen = failing_cell(real_ip, capsys, f"%%generate -m {SHORT} --no-context --images img {path}\nhi")
    line = assert_one_line(seen)
    assert f"{SHORT} cannot see images (the server lists its capabilities as: completion, insert)" in line
    real_ip.user_ns.pop("img")


def test_images_from_python_are_refused_for_a_model_without_vision(real_host: str) -> None:
    with pytest.raises(InvalidRequestError, match="cannot see images"):
        ollama_magic.generate("hi", SHORT, images=[png_bytes()], host=real_host)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        # The model has no thinking capability: Ollama says so.
        ("--think", "Ollama answered HTTP 400: registry.ollama.ai/library/tiny:latest does not support thinking"),
        # Ollama 0.9.3 predates think levels (they came with gpt-oss): it only takes a bool,
        # and answers "json: cannot unmarshal string ..."; ollama_magic says what that means.
        ("--think high", "This Ollama server accepts only --think without a level (it rejected 'high')"),
    ],
)
def test_think_with_a_model_that_cannot_is_ollamas_one_line_error(
    real_ip: Any, capsys: Any, flag: str, message: str
) -> None:
    seen = failing_cell(real_ip, capsys, f"%%generate -m {SHORT} {flag}\nhi")
    line = assert_one_line(seen)
    assert line.startswith(f"OllamaResponseError: {message}")


def test_think_from_python_carries_the_status(real_host: str) -> None:
    with pytest.raises(OllamaResponseError) as info:
        ollama_magic.generate("hi", SHORT, think=True, host=real_host)
    assert info.value.status_code == 400
    assert "does not support thinking" in str(info.value)


def test_placeholders_are_filled_before_sending(real_ip: Any) -> None:
    real_ip.user_ns["word"] = "hello"
    assert generate_cell(real_ip, f"-m {SHORT} --no-context", "{word}").stats.prompt_eval_count == prompt_tokens(
        "hello"
    )
    verbatim = generate_cell(real_ip, f"-m {SHORT} --no-context --no-interpolate", "{word}")
    assert verbatim.stats.prompt_eval_count == prompt_tokens("{word}")
    real_ip.user_ns.pop("word")


def test_host_option_and_setting_win_over_ollama_host(real_ip: Any, real_host: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")  # nothing there
    assert generate_cell(real_ip, f"-m {SHORT} --no-context --host {real_host}").text == HEY
    run(real_ip, f"%config GenerateMagics.host = 'http://{real_host}/'")
    assert generate_cell(real_ip, f"-m {SHORT} --no-context").text == HEY


def test_the_default_model_setting(real_ip: Any) -> None:
    run(real_ip, f"%config GenerateMagics.model = '{SHORT}'")
    assert generate_cell(real_ip, "--no-context").model == SHORT


def test_on_chunk_sees_the_stream_from_python(real_host: str) -> None:
    pieces: list[str] = []
    r = ollama_magic.generate(
        "hi", LONG, options={"num_predict": 30}, host=real_host, on_chunk=lambda text, _: pieces.append(text)
    )
    assert len(pieces) > 5  # token by token
    assert "".join(pieces) == r.text
    assert r.stats.eval_count == 30
