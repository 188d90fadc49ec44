"""How one answer looks: live HTML in a notebook, plain safe text in a terminal.

``render`` shows a generation while it streams and as a saved output, ``notes`` shows the
calm lines that are not errors, ``logprobs`` shows token probabilities.  Everything the
server sent is escaped here and nowhere else.

It may import the engine (for results and safe text) and IPython's display, nothing above.
"""
