"""More than one answer from one call: many prompts (``runner``: :func:`generate_many`;
``each``: one prompt per row of ``--each``), several models side by side (``comparison``),
their results and live views (``results``, ``view``) and the answer cache (``cache``).

Every answer is one call of the engine's :func:`~ollama_magic.engine.generation.generate`.
It may import the engine, the display and the server package, nothing above.
"""
