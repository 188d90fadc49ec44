"""The engine: one generation from a request to a result, with no IPython anywhere in it.

It owns the HTTP client and what reaches the server (``connection``, ``host``, ``auth``,
``busy``, ``client``), the request bodies (``request``, ``structured``, ``interpolate``),
the one generation loop (``generation``) and what it gives back (``result``, ``errors``,
``features``, ``capabilities``), the conversation threads (``conversation``) and the text
that is safe to show in a terminal (``terminal``).

It may import only itself, the standard library and the package's dependencies (requests,
jsonschema); never IPython, ipywidgets or traitlets (``tests/test_layers.py`` checks), so
the command line, a script or another frontend can use it as it is.
"""
