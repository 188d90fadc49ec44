"""The IPython frontend: ``%%generate`` and ``%ollama`` (``magics``, with the line parsed by
``arguments`` and each ``%ollama`` word a function in ``subcommands``), and what only a
kernel has: the last error (``explain``), new cells (``tocell``), output metadata
(``provenance``) and threads saved to files (``transcript``).

It is the top of the house: it may import every other sub-package; none imports it.
"""
