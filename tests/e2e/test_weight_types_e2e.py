"""Models people pull actually run: one model per weight type, on the real server.

The Ollama build of ``scripts/local-ollama`` once answered "666666..." for Q8_0, Q4_0, Q4_1,
Q4_K, Q6_K and Q4_K_M weights (its CPU libraries computed with the executable's SSE copy of
ggml, on a layout only their own AMX code knows) and aborted on any model with a head size of
64 (../shared/notes/real-small-model.md).  Ollama's library serves models in exactly these
types, so each is proven here: SmolLM2-135M-Instruct rewritten with its weights in that type
(scripts/make_quantized_gguf.py), and a random-weight model with the Binder demo model
``qwen2.5:0.5b``'s shapes and Q4_K_M mix (qwen2 architecture, head size 64, 24 blocks).

What these tests can catch depends on the processor.  Checked on an AMD EPYC without AMX
(the server loads ``libggml-cpu-icelake.so``): with ``OLLAMA_NUM_GPU=999`` the smollm2 models
answer "-,-'s-------..." and the server ends the answer unfinished (``done`` false), so every
smollm2 test fails; without DT_SYMBOLIC all pass (more slowly: the SSE copy computes), as the "666..."
needs the AMX weight layout of ``libggml-cpu-sapphirerapids.so``, which only a processor with
AMX loads.  The qwen-shaped model passed even with ``OLLAMA_NUM_GPU=999`` (its q/k/v biases may
keep it off the GPU-only attention); its random answers cannot show wrong arithmetic.

The models are made and created once (scripts/weight_type_models.py caches them in the
server's folder): a first run costs about 10 s per type (40 s for the qwen-shaped one) on
2 cores, a second run only the answers.  Every request uses ``keep_alive: 0`` so nine models
do not pile up in memory on a shared machine.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Any

import pytest
import requests

from .support import REPO, ollama_server_dir, url

pytestmark = pytest.mark.real_model

QUESTION = "What is the capital of France?"
NUM_PREDICT = 48
SMOLLM2_KINDS = [
    "smollm2-f16",
    "smollm2-q8_0",
    "smollm2-q4_0",
    "smollm2-q4_1",
    "smollm2-q5_0",
    "smollm2-q4_k",
    "smollm2-q6_k",
    "smollm2-q4_k_m",
]
QWEN_SHAPED = "qwen2.5-shape-q4_k_m"


def load_models_module() -> Any:
    spec = importlib.util.spec_from_file_location("weight_type_models", REPO / "scripts" / "weight_type_models.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["weight_type_models"] = module
    spec.loader.exec_module(module)
    return module


weight_type_models = load_models_module()


@pytest.fixture(scope="session")
def weight_models(real_host: str, real_model: str) -> Any:
    """``make(kind) -> model name``: the model of that weight type, created once per session.

    Skipped (with the reason) when the server is not a scripts/local-ollama one; a server
    without ``smollm2`` to make the others from fails (``real_model``), as CI must not skip.
    """
    folder = ollama_server_dir(real_host)
    if folder is None:
        pytest.skip("the server's folder is unknown (not started by scripts/local-ollama; set OLLAMA_E2E_DIR)")
    base = url(real_host)
    if not weight_type_models.source(folder).is_file():
        pytest.skip(f"{weight_type_models.source(folder)} is missing: run scripts/local-ollama start")
    made: dict[str, str] = {}

    def make(kind: str) -> str:
        if kind not in made:
            made[kind] = weight_type_models.ensure(folder, base, kind, log=folder / "provision.log")
        return made[kind]

    return make


def ask(host: str, model: str) -> dict[str, Any]:
    """The fixed question, greedy, 48 tokens at most; the whole HTTP answer for the asserts."""
    response = requests.post(
        f"{url(host)}/api/generate",
        json={
            "model": model,
            "prompt": QUESTION,
            "stream": False,
            "keep_alive": 0,
            "options": {"temperature": 0, "seed": 0, "num_predict": NUM_PREDICT},
        },
        timeout=600,
    )
    assert response.status_code == 200, f"{model}: HTTP {response.status_code}: {response.text[:300]}"
    answer: dict[str, Any] = response.json()
    assert answer.get("done") is True, answer
    return answer


def assert_sane(answer: dict[str, Any]) -> str:
    """An answer a person would call text: it ends, it has words, no run of one character."""
    text: str = answer["response"]
    run = re.search(r"(.)\1{9,}", text)
    assert run is None, f"a character repeated {len(run.group(0))} times (the broken build's '666...'): {text!r}"
    if answer.get("done_reason") == "length":
        assert answer["eval_count"] == NUM_PREDICT, answer
        assert len(set(text.split())) >= 4, f"a full-length answer with fewer than 4 distinct words: {text!r}"
    else:
        assert answer.get("done_reason") == "stop", answer
        assert text.strip(), "an empty answer"
    return text


@pytest.mark.parametrize("kind", SMOLLM2_KINDS)
def test_smollm2_in_each_weight_type_answers_sensibly(real_host: str, weight_models: Any, kind: str) -> None:
    # Every type here answers "Paris" at temperature 0 on this build (Q4_0 in a longer
    # sentence that reaches num_predict); before the fix all but F16 and Q5_0 said "666...".
    text = assert_sane(ask(real_host, weight_models(kind)))
    assert "Paris" in text, f"{kind}: {text!r}"


def test_qwen25_shaped_q4_k_m_model_runs(real_host: str, weight_models: Any) -> None:
    # Random weights cannot answer; what matters is that a model of the demo model's shape
    # (qwen2, head size 64, Q4_K/Q5_0/Q6_K/Q8_0 mix) loads and generates instead of aborting.
    answer = ask(real_host, weight_models(QWEN_SHAPED))
    assert answer["eval_count"] > 0, answer
    assert answer["prompt_eval_count"] > 0, answer
    assert answer.get("done_reason") in ("stop", "length"), answer


def test_generated_files_are_cached(real_host: str, weight_models: Any) -> None:
    # A second request for a kind this session made is answered from the cache: no new
    # generation, the same model on the server.
    folder = ollama_server_dir(real_host)
    assert folder is not None
    weight_models("smollm2-q4_k_m")
    stamp = folder / "mdl" / "weight-types" / "smollm2-q4_k_m.created"
    before = stamp.stat().st_mtime_ns
    assert weight_type_models.ensure(folder, url(real_host), "smollm2-q4_k_m") == "smollm2-q4_k_m"
    assert stamp.stat().st_mtime_ns == before
    assert not list(stamp.parent.glob("*.gguf")), "a generated GGUF was left beside the server's own copy"
