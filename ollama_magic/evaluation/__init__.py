"""Which model, which prompt: a model × data grid scored against expected answers.

``model`` holds the scores and the tables (no display), ``view`` draws the live grid, the
summary and the chart, ``runner`` is :func:`evaluate`, which runs the grid through the
batch runner and shows the view.  It may import the batch package and everything below it.
"""
