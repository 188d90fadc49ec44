"""The package's version, in a module of its own: the output metadata and ``%ollama
version`` read it without importing the whole package (``__init__`` imports everything)."""

__version__ = "0.1.0"
