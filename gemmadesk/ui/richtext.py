"""Text that reaches Qt's rich-text engine: escape it, or tell Qt it is plain.

Qt guesses: a QLabel, QMessageBox or tooltip whose text merely *looks* like HTML (``Qt::mightBeRichText``)
is rendered as HTML, so a model name, a chat title or an error message from a file or a server could
become a link or load an image. GemmaDesk's rule: every QLabel declares its text format (PlainText unless
it shows fixed markup), every piece of outside text put into markup goes through :func:`esc`, and
tooltips with outside text go through :func:`plain_tooltip`. tests/ui/test_rich_text.py enforces it.
"""

from __future__ import annotations

import html


def esc(text: object) -> str:
    """``text`` as HTML that shows exactly these characters."""
    return html.escape(str(text), quote=True)


def plain_tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally (Qt has no plain-text tooltip: escape it and mark it rich)."""
    return "<qt>" + esc(text).replace("\n", "<br>") + "</qt>"
