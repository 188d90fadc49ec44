"""Sphinx configuration: the documentation site of ollama_magic (``scripts/build-docs`` builds it).

The pages are Markdown (MyST); the example notebooks are shown with the outputs they were
saved with (real answers of the model smollm2), never executed here; the API reference is
generated from the docstrings, and the reference of every magic option and setting from
the code (``_ext/ollama_reference.py``), so neither can drift from the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

from ollama_magic import __version__  # noqa: E402

project = "ollama_magic"
author = "ollama_magic developers"
copyright = "ollama_magic developers"  # noqa: A001 - the name Sphinx reads
release = __version__
version = __version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "ollama_reference",
    "saved_widgets",
]

# The source folder is the repository (scripts/build-docs: `-c docs .`), so the pages link to
# the notebooks in examples/ and to benchmarks/README.md where they live, with the same
# relative links GitHub follows; nothing is copied. Only these files are pages:
root_doc = "docs/index"
include_patterns = ["docs/**", "examples/*.ipynb", "benchmarks/README.md", "scripts/SCHEMA_PROBE.md"]
exclude_patterns = [
    "docs/_build",
    "docs/_ext",
    "docs/_extra",
    "**/.ipynb_checkpoints",
    # never walked: environments, servers, caches
    ".git",
    ".venv*",
    ".ollama-local",
    "build",
    "dist",
]

# Option names and JSON in running text stay as typed: no "--each" turned into an en dash,
# no curly quotes in '{"num_ctx": 8192}'.
smartquotes = False

# -- MyST and MyST-NB ---------------------------------------------------------------------

# Notebooks keep the outputs they were saved with: the real model's answers. Never run here.
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "deflist"]
# `[text](page.md#a-heading)` links, as GitHub resolves them in the repository.
myst_heading_anchors = 3
# A saved widget has no live kernel behind it. Its view needs ipywidgets' JavaScript from a
# CDN, which these pages do not load (they work offline, and fetch nothing from elsewhere):
# show the output's HTML instead (the panel saves a line saying to run the cell), or a note
# where it saved only its repr (_ext/saved_widgets.py).
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

# -- autodoc ------------------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# No intersphinx: the build reaches no network. Types from the standard library and other
# packages in signatures therefore have no page to link to. The docstrings and type hints
# also name the package's internal modules and their classes (``ollama_magic.SUBMODULE...``),
# which are not part of the public API and have no page here (where they live changes;
# what they do is told on the pages). Nitpicky mode (``-n``) still
# checks every reference to a public name, ``ollama_magic.NAME``.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!ollama_magic\.).*"),
    (r"py:.*", r"ollama_magic\.[a-z_]+\..+"),
    (r"py:mod", r"ollama_magic\.(?!busy$)[a-z_]+"),
]

# -- HTML ---------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"ollama_magic {__version__}"
html_static_path = ["_static"]
# index.html at the top of the built site, leading to the front page (docs/index.html).
html_extra_path = ["_extra"]
html_show_sourcelink = False
