#!/usr/bin/env python3
"""Create, on a ``scripts/local-ollama`` server, one model per weight type a pulled model may have.

Usage: weight_type_models.py --dir DIR --host HOST [KIND ...]     (prints the model names)

KIND is one of ``KINDS`` (default: all): ``smollm2-<type>`` is SmolLM2-135M-Instruct
(DIR/mdl/smollm2.gguf, which ``local-ollama start`` provisions) rewritten with its weights in
``<type>`` by make_quantized_gguf.py; ``qwen2.5-shape-q4_k_m`` is a random-weight model with
Qwen2.5-0.5B's shapes in Q4_K_M (the Binder demo model's shape and weight types).

Why a module of its own: the end-to-end suite (tests/e2e/test_weight_types_e2e.py) and the
benchmark (benchmarks/weight_types.py) both need the models, made the same way and cached.
Made in DIR/mdl/weight-types/; a stamp there records a key of what the model was made from
(the source file, the generator, the Modelfile), so a second run neither regenerates nor
recreates anything while the server still has the model.  The GGUF is deleted once the
server has its own copy (a blob), so the disk holds each model once.  Standard library only: it runs with any Python;
the generator runs with DIR/rt/bin/python, which has gguf and numpy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATOR = HERE / "make_quantized_gguf.py"

#: kind -> (make_quantized_gguf.py arguments)
KINDS: dict[str, list[str]] = {
    "smollm2-f16": ["--type", "F16"],
    "smollm2-q8_0": ["--type", "Q8_0"],
    "smollm2-q4_0": ["--type", "Q4_0"],
    "smollm2-q4_1": ["--type", "Q4_1"],
    "smollm2-q5_0": ["--type", "Q5_0"],
    "smollm2-q4_k": ["--type", "Q4_K"],
    "smollm2-q6_k": ["--type", "Q6_K"],
    "smollm2-q4_k_m": ["--type", "Q4_K_M"],
    "qwen2.5-shape-q4_k_m": ["--shape", "qwen2.5-0.5b", "--type", "Q4_K_M", "--seed", "0"],
}


def source(server_dir: Path) -> Path:
    """The real model every kind is made from (its tokenizer, and for smollm2-* its weights)."""
    return server_dir / "mdl" / "smollm2.gguf"


def model_parameters(server_dir: Path) -> list[str]:
    """smollm2's PARAMETER lines (num_thread sized from the CPU quota), so every kind runs alike."""
    modelfile = server_dir / "mdl" / "smollm2.Modelfile"
    if not modelfile.is_file():
        return []
    return [line for line in modelfile.read_text().splitlines() if line.startswith("PARAMETER ")]


def server_models(host_url: str) -> set[str]:
    with urllib.request.urlopen(f"{host_url}/api/tags", timeout=30) as response:
        models = json.load(response).get("models") or []
    return {m["name"].removesuffix(":latest") for m in models}


def ensure(server_dir: Path, host_url: str, kind: str, log: Path | None = None) -> str:
    """Make the GGUF of ``kind`` and create its model on the server, unless both are current.

    Returns the model name (``kind``).  Raises ``RuntimeError`` with the tool's output if the
    generator or ``ollama create`` fails.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    src = source(server_dir)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: run scripts/local-ollama start --dir {server_dir}")
    folder = server_dir / "mdl" / "weight-types"
    folder.mkdir(parents=True, exist_ok=True)
    modelfile_tail = "\n".join(model_parameters(server_dir))
    # the source's size and mtime stand for its content (local-ollama replaces it atomically)
    stat = src.stat()
    key_text = json.dumps([KINDS[kind], GENERATOR.read_text(), stat.st_size, stat.st_mtime_ns, modelfile_tail])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    stamp = folder / f"{kind}.created"
    if stamp.is_file() and stamp.read_text() == key and kind in server_models(host_url):
        return kind
    gguf_path = folder / f"{kind}.gguf"
    python = server_dir / "rt" / "bin" / "python"
    try:
        run([str(python), str(GENERATOR), str(src), str(gguf_path), *KINDS[kind]], folder, log)
        modelfile = folder / f"{kind}.Modelfile"
        modelfile.write_text(f"FROM ./{gguf_path.name}\n{modelfile_tail}\n")
        env = {**os.environ, "OLLAMA_HOST": host_url}
        run([str(server_dir / "bin" / "ollama"), "create", kind, "-f", modelfile.name], folder, log, env)
    finally:
        gguf_path.unlink(missing_ok=True)  # the server keeps its own copy (a blob)
    stamp.write_text(key)
    return kind


def run(argv: list[str], cwd: Path, log: Path | None, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({done.returncode}): " + " | ".join(tail))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="the scripts/local-ollama folder")
    parser.add_argument("--host", required=True, help="its server, host:port")
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"default: all of {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
    host_url = args.host if "://" in args.host else f"http://{args.host}"
    for kind in args.kinds or KINDS:
        print(ensure(args.dir.resolve(), host_url, kind, log=args.dir / "provision.log"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
