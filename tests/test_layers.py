"""The house's rules, checked on the code: what each sub-package may import.

The package is layered, top to bottom: ``notebook`` (the magics) > ``widgets`` (the panel)
> ``evaluation`` > ``batch`` > ``server`` > ``display`` > ``engine``; ``cli.py`` and the
package's face stand on top, ``version.py`` beside everything.  Arrows point down only:
a module imports its own sub-package or a lower one, never a higher one, and no modules
import each other in a circle (not even for typing only).  The engine imports no IPython,
ipywidgets or traitlets anywhere, so a script or the command line can use it alone; and
only ``engine/connection.py`` makes an HTTP client.  Imports inside functions count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ollama_magic"
LAYERS = ["engine", "display", "server", "batch", "evaluation", "widgets", "notebook"]
TOP = {"__init__", "cli", "examples"}
NOTEBOOK_ONLY = ("IPython", "ipywidgets", "traitlets", "ipykernel")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module of the package that ``name`` imports (dotted, from the package root), and where."""
    tree = ast.parse(path.read_text())
    package = name.split(".")[:-1]  # "engine.client" and "engine.__init__" both live in engine
    modules = _modules()
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
        elif (node.module or "").startswith("ollama_magic."):
            module = node.module.removeprefix("ollama_magic.")
        else:
            continue
        for alias in node.names:  # `from ..server import management` imports a module
            sub = f"{module}.{alias.name}" if module else alias.name
            found.append((sub if sub in modules else module, node.lineno))
    modules = _modules()
    resolved = []
    for target, line in found:
        if target in modules or f"{target}.__init__" in modules:
            resolved.append((target if target in modules else f"{target}.__init__", line))
    return resolved


def _layer(module: str) -> int | None:
    head = module.split(".", maxsplit=1)[0]
    if head in LAYERS:
        return LAYERS.index(head)
    if head == "version":
        return -1  # a leaf anyone may read
    return len(LAYERS) if head in TOP or module == "__init__" else None


def test_every_module_has_a_place_in_the_layers() -> None:
    homeless = [m for m in _modules() if _layer(m) is None]
    assert not homeless, f"modules outside the layers: {homeless}; put each in a sub-package"


def test_arrows_point_down_only() -> None:
    up = []
    for name, path in _modules().items():
        for target, line in _imports(name, path):
            if _layer(target) > _layer(name):  # type: ignore[operator]
                up.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not up, "imports that point up:\n" + "\n".join(up)


def test_no_circle_of_imports() -> None:
    graph = {name: {t for t, _ in _imports(name, path) if t != name} for name, path in _modules().items()}
    # the package faces (__init__) only hand names on: a module importing its own package's
    # face is not a circle of code
    graph = {name: {t for t in targets if not t.endswith("__init__")} for name, targets in graph.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in seen:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        seen[node] = 2
        return None

    for node in sorted(graph):
        if node not in seen:
            circle = visit(node)
            assert circle is None, "a circle of imports: " + " -> ".join(circle)


def test_the_engine_knows_no_ipython() -> None:
    found = []
    for path in sorted((PACKAGE / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in NOTEBOOK_ONLY]
    assert not found, f"the engine imports notebook libraries: {found}"


def test_every_sub_package_says_what_it_owns_and_may_import() -> None:
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())) or ""
        assert len(doc.split()) >= 15 and "import" in doc, f"{layer}/__init__.py: say what it owns and may import"


def test_one_place_makes_a_client() -> None:
    makers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "OllamaClient"
            ):
                makers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert [m.split(":")[0] for m in makers] == ["engine/connection.py"], makers
