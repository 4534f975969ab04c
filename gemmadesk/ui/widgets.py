"""Small widgets the pages share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from PySide6.QtCore import QSize, Qt, SignalInstance
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QBoxLayout, QLabel, QLayout, QMessageBox, QPushButton, QSizePolicy, QWidget

from gemmadesk.ui.richtext import plain_tooltip

Box = TypeVar("Box", bound=QBoxLayout)


def flush_box(kind: Callable[[QWidget], Box], parent: QWidget, *items: QWidget | QLayout,
              grow: QWidget | None = None) -> Box:  # fmt: skip
    """A ``kind`` layout (QHBoxLayout, QVBoxLayout) on ``parent`` without margins, holding ``items`` in order;
    ``grow`` takes the spare room."""
    box = kind(parent)
    box.setContentsMargins(0, 0, 0, 0)
    for item in items:
        if isinstance(item, QLayout):
            box.addLayout(item)
        else:
            box.addWidget(item, 1 if item is grow else 0)
    return box


def plain_label(text: str = "", *, name: str = "", style: str = "") -> QLabel:
    """A word-wrapped label that shows ``text`` as plain text, never rich text (names, paths and messages
    from files, servers and models go in such labels); ``name`` is its accessible name, ``style`` its style
    sheet."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if name:
        label.setAccessibleName(name)
    if style:
        label.setStyleSheet(style)
    return label


def push_button(text: str, name: str, on_click: Callable[[], object] | SignalInstance, *,
                tip: str = "") -> QPushButton:  # fmt: skip
    """A button that does ``on_click``, with its accessible name (for screen readers) and an optional tooltip."""
    button = QPushButton(text)
    button.setAccessibleName(name)
    if tip:
        button.setToolTip(tip)
    button.clicked.connect(on_click)
    return button


class ElidedLabel(QLabel):
    """One line of plain text that shrinks with an ellipsis instead of widening the window; the full text is
    the tooltip when it does not fit."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:  # fmt: skip
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._mode = mode
        self._full = ""
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._full = text
        super().setText(text)
        self.updateGeometry()

    def full_text(self) -> str:
        return self._full

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(self.fontMetrics().horizontalAdvance("…") * 3, super().minimumSizeHint().height())

    def shown_text(self) -> str:
        """What is painted at the current width."""
        return self.fontMetrics().elidedText(self._full, self._mode, max(self.contentsRect().width(), 0))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        shown = self.shown_text()
        self.setToolTip(plain_tooltip(self._full) if shown != self._full else "")
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.contentsRect(), int(self.alignment()) | int(Qt.AlignmentFlag.AlignVCenter), shown)


class _AsksFirst(Protocol):
    confirm_box: QMessageBox | None  # the question open now (one at a time)


def ask_first(owner: _AsksFirst, box: QMessageBox, yes: str, role: QMessageBox.ButtonRole,
              on_yes: Callable[[], None]) -> None:  # fmt: skip
    """Open ``box`` (window-modal, no nested event loop) with a ``yes`` button and Cancel (the default, and
    Esc), kept as ``owner.confirm_box`` while it is open; ``on_yes()`` runs only if the user chose ``yes``."""
    yes_button = box.addButton(yes, role)
    no = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(no)
    box.setEscapeButton(no)
    owner.confirm_box = box

    def answered() -> None:
        owner.confirm_box = None
        if box.clickedButton() is yes_button:
            on_yes()
        box.deleteLater()

    box.finished.connect(answered)
    box.open()
