"""Ollama's text generation in Jupyter and IPython.

``%load_ext ollama_magic`` adds ``%%generate`` (stream an answer into the cell; the
next cell continues the conversation) and ``%ollama`` (models, threads).  The same
machinery is available from plain Python as :func:`generate`.
"""

from __future__ import annotations

from typing import Any

from .batch.cache import CacheError, ResultCache
from .batch.comparison import ComparisonResult, compare
from .batch.runner import BatchInterrupted, BatchResults, generate_many
from .display.logprobs import TokenProbabilities
from .engine import busy
from .engine.client import OllamaClient
from .engine.errors import (
    GenerationInterrupted,
    InvalidRequestError,
    ModelNotFoundError,
    OllamaBusyError,
    OllamaConnectionError,
    OllamaMagicError,
    OllamaResponseError,
    OllamaTimeoutError,
    SchemaError,
)
from .engine.generation import IgnoredFieldWarning, SchemaKeywordWarning, generate
from .engine.result import GenerationResult, Stats
from .evaluation.model import EvaluationInterrupted
from .evaluation.runner import evaluate
from .evaluation.view import Evaluation
from .version import __version__

__all__ = [
    "BatchInterrupted",
    "BatchResults",
    "CacheError",
    "ComparisonResult",
    "Evaluation",
    "EvaluationInterrupted",
    "GenerationInterrupted",
    "GenerationResult",
    "IgnoredFieldWarning",
    "InvalidRequestError",
    "ModelNotFoundError",
    "OllamaBusyError",
    "OllamaClient",
    "OllamaConnectionError",
    "OllamaMagicError",
    "OllamaResponseError",
    "OllamaTimeoutError",
    "ResultCache",
    "SchemaError",
    "SchemaKeywordWarning",
    "Stats",
    "TokenProbabilities",
    "__version__",
    "busy",
    "compare",
    "evaluate",
    "generate",
    "generate_many",
    "load_ipython_extension",
    "unload_ipython_extension",
]

_loaded: dict[int, Any] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ollama_magic``: register the magics and the cell-id hook."""
    from .notebook.magics import (
        GenerateMagics,  # imported here: IPython-only code stays out of `import ollama_magic`
        keep_question_marks,
    )

    magics = GenerateMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.events.register("post_run_cell", magics.post_run_cell)
    if keep_question_marks not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(keep_question_marks)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ollama_magic``: remove the event hook (IPython keeps magics registered)."""
    from .notebook.magics import keep_question_marks

    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        ipython.events.unregister("pre_run_cell", magics.pre_run_cell)
        ipython.events.unregister("post_run_cell", magics.post_run_cell)
    if keep_question_marks in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(keep_question_marks)
