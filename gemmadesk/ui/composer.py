"""Where the user types: Enter sends, Shift+Enter starts a new line, Esc ends an edit or stops a reply.

Editing an earlier message shows a banner with a Cancel button; the edit is tied to that message's id
(``editing``), and the chat view cancels it whenever another conversation is opened. The composer keeps
no "busy" state of its own: the chat controller decides whether a message is accepted (``set_busy`` only
switches Send and Stop), and the view clears the text once it was (:meth:`Composer.sent`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class MessageEdit(QPlainTextEdit):
    submit = Signal()
    escape = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submit.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.escape.emit()
            return
        super().keyPressEvent(event)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Message")
        self.setPlaceholderText("Message Gemma… (Enter sends, Shift+Enter for a new line)")
        self.setFixedHeight(72)


class Composer(QWidget):
    send = Signal(str, object)  # text, id of the message being edited (None: a new message)
    stop = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = MessageEdit()
        self.edit.submit.connect(self._submit)
        self.edit.escape.connect(self.escape)
        self.editing_label = QLabel("Editing an earlier message: sending replaces it and everything after it.")
        self.editing_label.setTextFormat(Qt.TextFormat.PlainText)
        self.cancel_edit_button = QPushButton("Cancel edit")
        self.cancel_edit_button.setAccessibleName("Cancel editing the earlier message")
        self.cancel_edit_button.setToolTip("Cancel the edit (Esc)")
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        self.editing_bar = QWidget()
        bar = QHBoxLayout(self.editing_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.editing_label, 1)
        bar.addWidget(self.cancel_edit_button)
        self.editing_bar.hide()
        self.thinking = QCheckBox("&Thinking")
        self.thinking.setAccessibleName("Let the model think before answering")
        self.send_button = QPushButton("&Send")
        self.send_button.setAccessibleName("Send message")
        self.send_button.clicked.connect(self._submit)
        self.stop_button = QPushButton("■ Stop")
        self.stop_button.setAccessibleName("Stop the reply")
        self.stop_button.setToolTip("Stop (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        side = QVBoxLayout()
        side.addWidget(self.send_button)
        side.addWidget(self.stop_button)
        side.addWidget(self.thinking)
        row = QHBoxLayout()
        row.addWidget(self.edit, 1)
        row.addLayout(side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.editing_bar)
        layout.addLayout(row)
        self.editing: int | None = None  # id of the message being edited
        self._draft = ""  # what was typed before the edit began

    def set_busy(self, busy: bool) -> None:
        """While a reply streams the Stop button replaces Send (typing the next message stays possible)."""
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def start_edit(self, message_id: int, text: str) -> None:
        if self.editing is None:
            self._draft = self.edit.toPlainText()
        self.editing = message_id
        self.edit.setPlainText(text)
        self.editing_bar.show()
        self.edit.setFocus()

    def cancel_edit(self) -> None:
        """End an edit without sending; what was typed before it comes back."""
        if self.editing is None:
            return
        self.editing = None
        self.editing_bar.hide()
        self.edit.setPlainText(self._draft)
        self._draft = ""

    def sent(self) -> None:
        """The message was accepted: clear the box and end any edit."""
        self.editing = None
        self._draft = ""
        self.editing_bar.hide()
        self.edit.clear()

    def escape(self) -> None:
        """Esc: end an edit if one is open, else stop the reply."""
        if self.editing is not None:
            self.cancel_edit()
        else:
            self.stop.emit()

    def _submit(self) -> None:
        text = self.edit.toPlainText().strip()
        if text:
            self.send.emit(text, self.editing)
