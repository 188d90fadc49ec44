"""``python -m ollama_magic.examples.generate_example --prompt "Explain AI ethics." --stream --temperature 0.7``

The command-line example users of the Ollama toolkit know; a thin entry to
:func:`ollama_magic.cli.generate_main` (the same as ``ollama-magic generate``).
"""

from __future__ import annotations

import sys

from ollama_magic.cli import generate_main

if __name__ == "__main__":
    sys.exit(generate_main(prog="python -m ollama_magic.examples.generate_example"))
