"""Several models in one cell against the real Ollama: both test models at once.

A private server (a clone of the shared server's folder, as in test_failures_e2e.py) is
started with ``OLLAMA_NUM_PARALLEL=2`` so the models really run side by side.

The interleaving is proven from the display updates between two long answers: tiny-long
and its twin (a copy under another name, made on the private server with /api/copy), each
400 tokens. One update shows the first's answer begun while the second's is unfinished,
and one the other way round; were they run one after the other, the first would be
complete, footer and all, before the second showed a word. Two long streams make the
proof independent of how busy the machine is: tiny's whole answer is a few tokens, which a
loaded machine can finish before tiny-long's first token, so tiny proves the columns
finish independently instead (its footer is shown while tiny-long still streams).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ollama_magic import GenerationInterrupted, compare

from ..test_comparison import Columns, answer_length, columns, finished, overlapped
from .conftest import LONG, SHORT
from .servers import OllamaServer, private_ollamas
from .support import HEY, ollama_server_dir, raw_generate, run, url

TOKENS = 400
TWIN = "tiny-long-twin"
ONE_THREAD = '{"num_thread": 1}'


@pytest.fixture(scope="module")
def parallel_server(real_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaServer]:
    source = ollama_server_dir(real_host)
    if source is None:
        pytest.skip("the folder of the server at OLLAMA_E2E_HOST is unknown: set OLLAMA_E2E_DIR to it")
    root = tmp_path_factory.mktemp("parallel-ollama")
    env = {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_MAX_LOADED_MODELS": "2"}
    try:
        with private_ollamas(source, root, 1, env) as servers:
            server = servers[0]
            log = (server.folder / "serve.log").read_text(errors="replace")
            assert "OLLAMA_NUM_PARALLEL:2" in log, "the private server did not take OLLAMA_NUM_PARALLEL=2"
            copied = requests.post(
                f"{url(server.host)}/api/copy", json={"source": LONG, "destination": TWIN}, timeout=30
            )
            assert copied.status_code == 200, copied.text
            # The models loaded before the test, with the runner options the test uses (a
            # different num_thread reloads a model), so none loads while another streams.
            # The twin shares tiny-long's file, so Ollama runs both in one runner, in its
            # two parallel slots: their tokens come out of the same decoding steps.
            for model in (SHORT, LONG, TWIN):
                raw_generate(
                    server.host,
                    model=model,
                    prompt="hi",
                    keep_alive="10m",
                    options={"num_predict": 1, "num_thread": 1},
                )
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_both_models_stream_side_by_side_and_continue_their_conversations(
    parallel_server: OllamaServer, real_nb: Any
) -> None:
    host = parallel_server.host
    run(real_nb, "%config GenerateMagics.update_interval = 0.0")
    models = f"-m {LONG} -m {TWIN} -m {SHORT}"
    cell = f"%%generate {models} --host {host} --num-predict {TOKENS} --options '{ONE_THREAD}' -o r\nhi"
    assert run(real_nb, cell).success
    updates = [m["data"] for m in real_nb.publisher.messages if "data" in m]
    seen = [columns(u["text/plain"]) for u in updates]
    # tiny-long's answer had begun while its twin's was unfinished, and the other way round.
    summary = [(answer_length(c[LONG]), finished(c[LONG]), answer_length(c[TWIN]), finished(c[TWIN])) for c in seen]
    assert overlapped(seen, LONG, TWIN), summary
    # tiny's column was complete, footer and all, while tiny-long's was still streaming.
    assert any(finished(c[SHORT]) and answer_length(c[LONG]) > 0 and not finished(c[LONG]) for c in seen)

    r = real_nb.user_ns["r"]
    assert list(r) == [LONG, TWIN, SHORT] and r.errors == {}
    assert r[SHORT].text == HEY and r[SHORT].done_reason == "stop"
    for model in (LONG, TWIN):
        assert r[model].stats.eval_count == TOKENS and r[model].done_reason == "length"
        assert r[model].text.startswith("Hey now! Hey now!")
    final = Columns(updates[-1]["text/html"])
    assert final.headers == [LONG, TWIN, SHORT]
    assert [f.split(" · ")[0] for f in final.footers] == [LONG, TWIN, SHORT]
    # Each model's figures are named; tiny's 2 tokens against 400 are no race by wall time.
    assert f"{LONG}: first token " in final.summary and f"{TOKENS} tokens at " in final.summary
    assert f"{SHORT}: first token " in final.summary and " in all" in final.summary

    # A second cell continues each model's own conversation, as the server sees it.
    run(real_nb, "%config GenerateMagics.update_interval = 0.05")
    again = f"%%generate {models} --host {host} --num-predict 5 -o r2\nhi"
    assert run(real_nb, again).success
    r2 = real_nb.user_ns["r2"]
    for model in (LONG, TWIN, SHORT):
        assert r2[model].request["context"] == r[model].context
        reference = raw_generate(host, model=model, prompt="hi", context=r[model].context, options={"num_predict": 5})
        assert r2[model].stats.prompt_eval_count == reference["prompt_eval_count"]


def test_a_missing_model_fails_in_its_column_and_the_other_answers(real_nb: Any) -> None:
    assert run(real_nb, f"%%generate -m no-such-model -m {SHORT} --no-context -o r\nhi").success
    r = real_nb.user_ns["r"]
    assert r[SHORT].text == HEY
    assert r.errors["no-such-model"].startswith("ModelNotFoundError: Model 'no-such-model' is not on the Ollama server")
    plain = columns(real_nb.publisher.final["text/plain"])
    assert plain["no-such-model"].startswith("Failed: ModelNotFoundError: Model 'no-such-model'")


def test_an_interrupt_stops_both_and_the_server_is_free_at_once(parallel_server: OllamaServer) -> None:
    host = parallel_server.host
    seen: dict[str, int] = {SHORT: 0, LONG: 0}

    def interrupt(event: Any) -> None:
        if event.kind == "chunk":
            seen[event.model] += 1
            if seen[LONG] >= 20:
                raise KeyboardInterrupt

    with pytest.raises(GenerationInterrupted) as info:
        compare("hi", [LONG, SHORT], host=host, options={"num_predict": 5000}, on_event=interrupt)
    partial = info.value.partial
    assert ("Hey now! " * 600).startswith(partial[LONG].text) and len(partial[LONG].text) >= 20
    assert not partial[LONG].complete
    # The long generation was stopped: the server answers the next request from that model
    # with nothing queued before it (5000 tokens would take it well over a minute here).
    after = raw_generate(host, model=LONG, prompt="hi", options={"num_predict": 3})
    assert after["eval_count"] == 3
