"""The provisioning helpers that make real models run on the local Ollama build.

scripts/elf_symbolic.py rewrites a CPU backend library so that it binds its own symbols
first (without it, quantized models answer "666666..." and everything runs on slow SSE
code); scripts/cpu_quota.py sizes a runner's threads from the cgroup quota and the affinity
mask (without it, a container allowed one CPU spins a thread per host core).  Both run on
every ``scripts/local-ollama start``; the end-to-end side is tests/e2e/test_real_model_e2e.py.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


elf = load("elf_symbolic")
quota = load("cpu_quota")


def tiny_elf(tags: list[tuple[int, int]]) -> bytes:
    """A minimal 64-bit little-endian ELF: a header, one PT_DYNAMIC program header, the entries."""
    phoff, dyn = 64, 64 + 56
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, 56, 1)
    entries = [*tags, (0, 0)]
    phdr = struct.pack("<IIQQQQQQ", elf.PT_DYNAMIC, 4, dyn, 0, 0, 16 * len(entries), 16 * len(entries), 8)
    return bytes(header) + phdr + b"".join(struct.pack("<qQ", t, v) for t, v in entries)


def test_the_rpath_entry_becomes_symbolic_and_nothing_else_changes(tmp_path: Path) -> None:
    lib = tmp_path / "libggml-cpu-haswell.so"
    original = tiny_elf([(1, 7), (elf.DT_RPATH, 99), (5, 1234)])
    lib.write_bytes(original)
    lib.chmod(0o755)
    assert elf.make_symbolic(lib) == "DT_RPATH replaced by DT_SYMBOLIC"
    patched = lib.read_bytes()
    assert len(patched) == len(original)
    assert [t for t, _ in elf.dynamic_entries(patched)[1]] == [1, elf.DT_SYMBOLIC, 5, 0]
    assert elf.dynamic_entries(patched)[1][0] == (1, 7)  # the other entries are kept
    assert lib.stat().st_mode & 0o777 == 0o755
    # idempotent: a second start leaves the file alone
    assert elf.make_symbolic(lib) == "already binds its own symbols first"
    assert lib.read_bytes() == patched


def test_a_runpath_is_used_when_there_is_no_rpath(tmp_path: Path) -> None:
    lib = tmp_path / "lib.so"
    lib.write_bytes(tiny_elf([(elf.DT_RUNPATH, 3)]))
    assert elf.make_symbolic(lib) == "DT_RUNPATH replaced by DT_SYMBOLIC"
    assert elf.has_symbolic(lib)


def test_files_it_cannot_patch_are_refused_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_path = tmp_path / "nopath.so"
    no_path.write_bytes(tiny_elf([(1, 7)]))
    text = tmp_path / "readme.so"
    text.write_text("not a library")
    assert elf.main([str(no_path), str(text)]) == 1
    err = capsys.readouterr().err
    assert "nopath.so: cannot patch: no DT_RPATH or DT_RUNPATH entry" in err
    assert "readme.so: cannot patch: not a 64-bit little-endian ELF file" in err
    assert text.read_text() == "not a library"
    assert not elf.has_symbolic(no_path)


@pytest.mark.parametrize(
    ("cgroup", "visible", "online", "threads"),
    [
        (None, 2, 2, None),  # a machine of its own: Ollama's own choice is right
        (1.0, 2, 2, 1),  # Binder: the host's cores visible, one CPU allowed
        (1.5, 4, 4, 1),  # a fraction rounds down, never to zero
        (0.5, 8, 8, 1),
        (None, 1, 2, 1),  # taskset -c 0
        (3.0, 2, 4, 2),  # the affinity mask is the tighter limit
        (8.0, 4, 4, None),  # a quota above the cores limits nothing
    ],
)
def test_runner_threads_follow_the_quota_and_the_affinity_mask(
    cgroup: float | None, visible: int, online: int, threads: int | None
) -> None:
    assert quota.runner_threads(cgroup, visible, online) == threads


def test_the_cgroup_quota_is_read_from_v2_then_v1(tmp_path: Path) -> None:
    assert quota.cgroup_quota(tmp_path) is None  # no cgroup files: unlimited
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert quota.cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert quota.cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert quota.cgroup_quota(tmp_path) == 1.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert quota.cgroup_quota(tmp_path) is None


def _names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[<>=!~\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in requirements if r.strip()}


def test_every_import_of_the_examples_is_installed_by_the_examples_extra_and_binder() -> None:
    """A newcomer opening any example from scripts/try or Binder never meets ModuleNotFoundError."""
    import ast

    import nbformat

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    repo = SCRIPTS.parent
    extra = _names(tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]["examples"])
    binder = _names(
        line for line in (repo / "binder" / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    )
    assert extra <= binder, f"binder/requirements.txt lacks {sorted(extra - binder)}"
    provided = {"ollama_magic", "IPython", "ipywidgets", *sys.stdlib_module_names} | extra
    for path in sorted((repo / "examples").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or cell.source.lstrip().startswith("%%"):
                continue  # a cell magic's body is not Python
            python = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(python)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules = [node.module]
                for module in modules:
                    top = module.split(".")[0]
                    assert top in provided, f"{path.name} imports {top}, which the examples extra does not install"
