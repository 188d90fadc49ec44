"""The point-and-click panel (``%ollama ui``, or ``ollama_magic.widgets.GeneratePanel()``).

It may import the server package, the display and the engine, nothing above.
"""

from .panel import GeneratePanel

__all__ = ["GeneratePanel"]
