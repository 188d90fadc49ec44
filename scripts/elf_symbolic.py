#!/usr/bin/env python3
"""Make each ggml CPU backend library bind its own symbols first (DT_SYMBOLIC).

Why: the Ollama build that scripts/local-ollama installs (IPEX-LLM's, from the PyPI wheel
bigdl-core-cpp) ships an ``ollama-lib`` executable that exports its own copy of ggml's CPU
compute code, built for plain SSE.  When the server loads the CPU variant for this processor
(``lib/ollama/libggml-cpu-<variant>.so``), that library's calls to its own exported functions
(``ggml_graph_compute``, ``ggml_cpu_has_avx2``, ...) bind to the executable's copy instead.
Then every model is computed by the slow SSE copy, and the variants that repack weights for
AMX (sapphirerapids) are computed on a layout the SSE code does not know: quantized models
answer "666666..." forever.  ``DT_SYMBOLIC`` in a library's dynamic section makes the dynamic
linker resolve that library's references to its own definitions first, so the chosen variant
computes with its own AVX2/AVX-512/AMX kernels (see ../shared/notes/real-small-model.md).

How: the ``DT_RPATH`` (or ``DT_RUNPATH``) entry of these libraries names a folder on the
wheel's build machine and is useless here; it is rewritten in place to ``DT_SYMBOLIC`` (tag
16, value 0).  That is a change of a few bytes per file, needs nothing but the standard
library, and is idempotent: a file that already has ``DT_SYMBOLIC`` is left alone.

Usage: elf_symbolic.py LIB.so...   (prints one line per file; exit 1 if a file cannot be patched)
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

DT_NULL, DT_SYMBOLIC, DT_RPATH, DT_RUNPATH = 0, 16, 15, 29
PT_DYNAMIC = 2


def dynamic_entries(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """The file offset of the dynamic section and its (tag, value) entries, up to DT_NULL."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (e_phoff,) = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize
        )
        if p_type == PT_DYNAMIC:
            entries = []
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, value = struct.unpack_from("<qQ", data, off)
                entries.append((tag, value))
                if tag == DT_NULL:
                    break
            return p_offset, entries
    raise ValueError("no dynamic section (not a shared library?)")


def make_symbolic(path: Path) -> str:
    """Patch ``path`` in place; return what was done, in words."""
    data = bytearray(path.read_bytes())
    start, entries = dynamic_entries(bytes(data))
    tags = [tag for tag, _ in entries]
    if DT_SYMBOLIC in tags:
        return "already binds its own symbols first"
    for wanted in (DT_RPATH, DT_RUNPATH):
        if wanted in tags:
            index = tags.index(wanted)
            struct.pack_into("<qQ", data, start + 16 * index, DT_SYMBOLIC, 0)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(bytes(data))
            tmp.chmod(path.stat().st_mode)
            tmp.replace(path)
            name = "DT_RPATH" if wanted == DT_RPATH else "DT_RUNPATH"
            return f"{name} replaced by DT_SYMBOLIC"
    raise ValueError("no DT_RPATH or DT_RUNPATH entry to turn into DT_SYMBOLIC")


def has_symbolic(path: Path) -> bool:
    """Whether the library binds its own symbols first."""
    return DT_SYMBOLIC in [tag for tag, _ in dynamic_entries(path.read_bytes())[1]]


def main(argv: list[str]) -> int:
    failed = 0
    for name in argv:
        try:
            print(f"{name}: {make_symbolic(Path(name))}")
        except (OSError, ValueError, struct.error) as exc:
            print(f"{name}: cannot patch: {exc}", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
