"""Runnable examples: ``python -m ollama_magic.examples.generate_example --prompt TEXT``."""
