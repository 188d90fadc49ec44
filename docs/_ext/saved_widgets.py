"""Saved widget outputs in the example notebooks, shown as a short note instead of their repr.

A widget (``%ollama pull``'s progress bar, the ``%ollama ui`` panel) lives in its kernel; the
notebook keeps only a reference to it, with a ``text/plain`` fallback such as
``HBox(children=(HTML(value='', ...``, which means nothing to a reader. These pages load no
widget JavaScript (conf.py), so an output that offers nothing but the widget and that repr
is shown as one line saying what it was. An output that saved its own HTML for viewers
without a kernel (the panel does) keeps it.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

WIDGET = "application/vnd.jupyter.widget-view+json"
NOTE = "A widget: it is shown only while the notebook runs in a kernel (run the notebook to see it)."


class SavedWidgetNote(SphinxPostTransform):
    """Replace the ``text/plain`` repr of a widget-only output with a note (before MyST-NB picks
    which of an output's types to show, at priority 4)."""

    default_priority = 3

    def run(self, **kwargs: Any) -> None:
        for bundle in list(self.document.findall(nodes.container)):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            by_type = {child.get("mime_type"): child for child in bundle.children}
            if WIDGET not in by_type or set(by_type) - {WIDGET, "text/plain"}:
                continue
            plain = by_type.get("text/plain")
            if plain is None:
                continue
            note = nodes.paragraph(classes=["saved-widget-note"])
            note += nodes.emphasis(text=NOTE)
            plain.children = [note]
            note.parent = plain


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_post_transform(SavedWidgetNote)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
