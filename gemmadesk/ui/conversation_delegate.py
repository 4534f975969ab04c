"""How the sidebar draws a conversation: its title on one line, cut with an ellipsis to the list's width (never
a horizontal scrollbar); while searching, a second line with the matching text, the matched words
highlighted. Titles and snippets are the user's or the model's text: they are drawn as plain text with a
QTextLayout (formats on ranges), never as HTML."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRegularExpression, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QTextCharFormat, QTextLayout
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from gemmadesk.core.search_text import highlight_pattern
from gemmadesk.ui.conversation_model import SNIPPET_ROLE

_Index = QModelIndex | QPersistentModelIndex
HIGHLIGHT = "#ffd54f"  # a marker colour that reads on light and dark bases (the text on it is black)


def highlight_ranges(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """(start, length) in UTF-16 units (what QTextLayout counts) of the words of ``text`` that match."""
    pattern = highlight_pattern(terms)
    if not pattern:
        return []
    options = (QRegularExpression.PatternOption.CaseInsensitiveOption
               | QRegularExpression.PatternOption.UseUnicodePropertiesOption)  # fmt: skip
    matches = QRegularExpression(pattern, options).globalMatch(text)
    out = []
    while matches.hasNext():
        m = matches.next()
        if m.capturedLength() > 0:
            out.append((m.capturedStart(), m.capturedLength()))
    return out


class ConversationDelegate(QStyledItemDelegate):
    def __init__(self, terms: Callable[[], list[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._terms = terms  # () -> the current search terms

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:  # noqa: N802
        base = super().sizeHint(option, index)
        lines = 2 if self._snippet(index) else 1
        # Width 1: the view then gives every row its own width, and the title is elided to it.
        return QSize(1, base.height() + (lines - 1) * option.fontMetrics.height())

    def _snippet(self, index: _Index) -> str:
        snippet = str(index.data(SNIPPET_ROLE) or "")
        return "" if snippet == str(index.data(Qt.ItemDataRole.DisplayRole) or "") else snippet

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        snippet = self._snippet(index)
        if not snippet:
            super().paint(painter, option, index)
            return
        self.initStyleOption(option, index)
        widget = option.widget
        style = widget.style() if widget is not None else None
        title = option.text
        option.text = ""
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, widget)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        colour = option.palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        metrics = option.fontMetrics
        rect = option.rect.adjusted(4, 1, -4, -1)
        painter.save()
        painter.setPen(colour)
        line = metrics.height()
        painter.drawText(rect.left(), rect.top(), rect.width(), line, int(Qt.AlignmentFlag.AlignVCenter),
                         metrics.elidedText(title, Qt.TextElideMode.ElideRight, rect.width()))
        shown = metrics.elidedText(snippet, Qt.TextElideMode.ElideRight, rect.width())
        layout = QTextLayout(shown, option.font)
        formats = []
        for start, length in highlight_ranges(shown, self._terms()):
            fmt = QTextCharFormat()
            fmt.setBackground(QColor(HIGHLIGHT))
            fmt.setForeground(Qt.GlobalColor.black)
            fmt.setFontWeight(QFont.Weight.Bold)
            r = QTextLayout.FormatRange()
            r.start, r.length, r.format = start, length, fmt
            formats.append(r)
        layout.setFormats(formats)
        layout.beginLayout()
        text_line = layout.createLine()
        if text_line.isValid():
            text_line.setLineWidth(rect.width() * 2)  # already elided: one line
        layout.endLayout()
        faded = painter.pen().color()
        faded.setAlpha(190)
        painter.setPen(faded)
        layout.draw(painter, QPointF(rect.left(), rect.top() + line))
        painter.restore()

