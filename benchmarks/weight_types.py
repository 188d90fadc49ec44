"""Tokens/s of a real model in each weight type a pulled model may have, on a local-ollama server.

    .venv/bin/python benchmarks/weight_types.py --dir .ollama-local --host 127.0.0.1:11435 [--rounds 3] [KIND ...]

The models are the ones tests/e2e/test_weight_types_e2e.py proves correct
(scripts/weight_type_models.py makes and caches them).  For each: one warm-up request (the
load), then ``--rounds`` greedy answers of up to 128 tokens to a fixed question; the table
gives the median generation tokens/s and prompt tokens/s the server itself reports
(``eval_count / eval_duration``), the file size and the types of its 2-D weights.  The model
is unloaded before the next one.  A benchmark, not a test: on a shared machine the figures
measure the other processes too (here an F16 run once fell from 57 to 0.5 tokens/s).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import table  # noqa: E402

spec = importlib.util.spec_from_file_location("weight_type_models", HERE.parent / "scripts" / "weight_type_models.py")
assert spec and spec.loader
weight_type_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(weight_type_models)

PROMPT = "Why is the sky blue? Explain it to a child in a few sentences."
NUM_PREDICT = 128


def generate(base: str, model: str, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "prompt": PROMPT, "stream": False, **extra}
    body.setdefault("options", {"temperature": 0, "seed": 0, "num_predict": NUM_PREDICT})
    response = requests.post(f"{base}/api/generate", json=body, timeout=900)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def weights_of(base: str, model: str) -> tuple[str, str]:
    """(size in MB, the file type Ollama reports) of ``model``."""
    tags = requests.get(f"{base}/api/tags", timeout=30).json()["models"]
    entry = next(m for m in tags if m["name"].removesuffix(":latest") == model)
    return f"{entry['size'] / 1e6:.0f}", entry.get("details", {}).get("quantization_level", "?")


def measure(base: str, model: str, rounds: int) -> list[str]:
    generate(base, model, options={"num_predict": 1})  # the load, not measured
    decode, prompt = [], []
    for i in range(rounds):
        # a different first word each round, so the prompt is read again, not found in the cache
        answer = generate(base, model, prompt=f"({i + 1}) {PROMPT}")
        decode.append(answer["eval_count"] / answer["eval_duration"] * 1e9)
        prompt.append(answer["prompt_eval_count"] / max(answer["prompt_eval_duration"], 1) * 1e9)
        tokens = answer["eval_count"]
    generate(base, model, keep_alive=0, options={"num_predict": 1})
    size, level = weights_of(base, model)
    return [model, level, size, str(tokens), f"{statistics.median(decode):.1f}", f"{statistics.median(prompt):.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="the scripts/local-ollama folder")
    parser.add_argument("--host", required=True, help="its server, host:port")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("kinds", nargs="*", metavar="KIND", help="default: smollm2 as shipped, then every kind")
    args = parser.parse_args(argv)
    base = args.host if "://" in args.host else f"http://{args.host}"
    rows = []
    for kind in args.kinds or ["smollm2", *weight_type_models.KINDS]:
        model = kind if kind == "smollm2" else weight_type_models.ensure(args.dir.resolve(), base, kind)
        rows.append(measure(base, model, args.rounds))
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    headers = ["model", "file type", "MB", "tokens", "generation tok/s (median)", "prompt tok/s (median)"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
