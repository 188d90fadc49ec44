#!/usr/bin/env python3
"""Was anything of an old README lost when it moved into docs/?

    python scripts/check_docs_moved.py main          # the README of `main` against this checkout
    python scripts/check_docs_moved.py 3b6c57a --docs-only

Prints every non-empty line of README.md at the given git revision that is found neither in
today's README.md nor in docs/*.md (with --docs-only: not in docs/*.md), and exits 1 if
there is one. Lines are compared whole, ignoring surrounding spaces, the heading level
(``### Conversations`` became ``# Conversations`` on a page of its own) and link targets
(``](#safety)`` became ``](safety.md)``). Run it after merging a branch that added to the
old README, to see what still has to move.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalise(line: str) -> str:
    line = re.sub(r"^#+\s*", "", line.strip())
    return re.sub(r"\]\([^)]*\)", "]()", line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the git revision whose README.md moved (e.g. main)")
    parser.add_argument("--docs-only", action="store_true", help="look only in docs/*.md, not in README.md")
    args = parser.parse_args()
    old = subprocess.run(
        ["git", "show", f"{args.revision}:README.md"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    pages = sorted((ROOT / "docs").glob("*.md"))
    if not args.docs_only:
        pages.append(ROOT / "README.md")
    found = {normalise(line) for page in pages for line in page.read_text().splitlines()}
    lost = [(n, line) for n, line in enumerate(old, 1) if line.strip() and normalise(line) not in found]
    for n, line in lost:
        print(f"README.md:{n}: {line}")
    total = sum(1 for line in old if line.strip())
    print(f"{len(lost)} of {total} non-empty lines of {args.revision}:README.md not found", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
