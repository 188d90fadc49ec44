"""Managing the Ollama server: tables of its models (``management``) and pulling a model
with a progress bar a person can read (``pull``).

It may import the engine and the display, nothing above.
"""
