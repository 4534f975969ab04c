"""Where the user types: Enter sends, Shift+Enter starts a new line, Esc stops a reply."""

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
    stop = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submit.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.stop.emit()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    send = Signal(str, int)  # text, row being edited (-1: a new message)
    stop = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = MessageEdit()
        self.edit.setAccessibleName("Message")
        self.edit.setPlaceholderText("Message Gemma… (Enter sends, Shift+Enter for a new line)")
        self.edit.setFixedHeight(72)
        self.edit.submit.connect(self._submit)
        self.edit.stop.connect(self.stop)
        self.editing_label = QLabel()
        self.editing_label.setTextFormat(Qt.TextFormat.PlainText)
        self.editing_label.hide()
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
        layout.addWidget(self.editing_label)
        layout.addLayout(row)
        self.editing_row = -1
        self.busy = False

    def set_busy(self, busy: bool) -> None:
        """While a reply streams the Stop button replaces Send (typing the next message stays possible)."""
        self.busy = busy
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def start_edit(self, row: int, text: str) -> None:
        self.editing_row = row
        self.edit.setPlainText(text)
        self.editing_label.setText("Editing an earlier message: sending replaces it and everything after it.")
        self.editing_label.show()
        self.edit.setFocus()

    def _submit(self) -> None:
        text = self.edit.toPlainText().strip()
        if not text or self.busy:
            return
        row, self.editing_row = self.editing_row, -1
        self.editing_label.hide()
        self.edit.clear()
        self.send.emit(text, row)
