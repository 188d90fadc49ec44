"""The README stays a front page and the documentation holds together.

What a reader would notice: a README grown back into a manual, a link (on GitHub, in the
repository or in the built site) that leads nowhere, an example notebook missing from the
site's table of contents. The site itself is built with warnings as errors by
``scripts/build-docs`` (in CI); these checks need no Sphinx.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```", re.MULTILINE | re.DOTALL)


def prose(text: str) -> str:
    """The Markdown outside code blocks (a ``[x](y)`` in a code block is not a link)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor GitHub (and MyST's heading anchors) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", prose(path.read_text()), re.MULTILINE)}


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:...
    ]


def toctree_entries(page: Path) -> list[str]:
    """The documents a page's ``{toctree}`` blocks list (options such as ``:maxdepth:`` left out)."""
    return [
        entry.strip()
        for block in TOCTREE.findall(page.read_text())
        for entry in block.splitlines()
        if entry.strip() and not entry.strip().startswith(":")
    ]


def test_readme_is_a_front_page_of_at_most_200_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move the details into docs/"


def test_readme_gives_the_test_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = "pip install -e '.[test]' && python -m pytest"
    assert "pip install -q -e '.[test]' && python -m pytest" in ci
    assert command in README.read_text()


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_links_to_documentation_pages() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert len(linked & set(PAGES)) >= 20


def test_every_example_notebook_is_in_the_table_of_contents() -> None:
    entries = {(page.parent / entry).resolve() for page in PAGES for entry in toctree_entries(page)}
    notebooks = sorted((ROOT / "examples").glob("*.ipynb"))
    assert notebooks
    missing = [nb.name for nb in notebooks if nb.with_suffix("").resolve() not in entries]
    assert not missing, f"example notebooks missing from the docs' toctree: {missing}"


def test_every_docs_page_is_in_the_table_of_contents() -> None:
    entries = {entry for page in PAGES for entry in toctree_entries(page)}
    orphans = [p.name for p in PAGES if p.stem not in entries and p.name != "index.md"]
    assert not orphans, f"pages no table of contents reaches: {orphans}"
