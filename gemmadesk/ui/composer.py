"""Where the user types: Enter sends, Shift+Enter starts a new line, Esc ends an edit or stops a reply.

Editing an earlier message shows a banner with a Cancel button; the edit is tied to that message's id
(``editing``), and the chat view cancels it whenever another conversation is opened. The composer keeps
no "busy" state of its own: the chat controller decides whether a message is accepted (``set_busy`` only
switches Send and Stop), and the view clears the text once it was (:meth:`Composer.sent`).

Attachments (issue 14): the paper-clip button, files dropped on the box (or anywhere on the chat: the chat
view forwards them) and pictures pasted from the clipboard are handed on (``files_dropped``,
``image_pasted``, ``attach_clicked``); the chat controller stores them off the GUI thread and the view adds
each prepared one here as a removable thumbnail (:meth:`Composer.add_attachment`). A message may be only
attachments. An edit of an earlier message changes its text only: pending attachments wait for the next
new message.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.types import Attachment
from gemmadesk.ui.attachments import AttachmentStrip, Prepared
from gemmadesk.ui.widgets import flush_box, push_button


def local_files(mime: QMimeData) -> list[str]:
    """The local files a drop or paste carries (remote URLs are never fetched)."""
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()] if mime.hasUrls() else []


def carries_attachment(mime: QMimeData) -> bool:
    return bool(local_files(mime)) or mime.hasImage()


class MessageEdit(QPlainTextEdit):
    submit = Signal()
    escape = Signal()
    files_dropped = Signal(list)  # local paths dropped or pasted
    image_pasted = Signal(object)  # QImage (clipboard or dropped image data)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return carries_attachment(source) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        """Paste and drop: files and pictures become attachments; text is inserted as text."""
        files = local_files(source)
        if files:
            self.files_dropped.emit(files)
        elif source.hasImage():
            image = source.imageData()
            if isinstance(image, QImage):
                self.image_pasted.emit(image)
        else:
            super().insertFromMimeData(source)

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
    attach_clicked = Signal()
    files_dropped = Signal(list)
    image_pasted = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = MessageEdit()
        self.edit.submit.connect(self._submit)
        self.edit.escape.connect(self.escape)
        self.editing_label = QLabel("Editing an earlier message: sending replaces it and everything after it.")
        self.editing_label.setTextFormat(Qt.TextFormat.PlainText)
        self.cancel_edit_button = push_button("Cancel edit", "Cancel editing the earlier message", self.cancel_edit,
                                              tip="Cancel the edit (Esc)")
        self.editing_bar = QWidget()
        flush_box(QHBoxLayout, self.editing_bar, self.editing_label, self.cancel_edit_button, grow=self.editing_label)
        self.editing_bar.hide()
        self.thinking = QCheckBox("&Thinking")
        self.thinking.setAccessibleName("Let the model think before answering")
        self.send_button = push_button("&Send", "Send message", self._submit)
        self.stop_button = push_button("■ Stop", "Stop the reply", self.stop, tip="Stop (Esc)")
        self.stop_button.hide()
        self.attach_button = QToolButton()
        self.attach_button.setText("Attach…")
        self.attach_button.setAccessibleName("Attach images or audio")
        self.attach_button.setToolTip("Attach images or audio (or drop files here, or paste a picture)")
        self.attach_button.clicked.connect(self.attach_clicked)
        self.attachments = AttachmentStrip(None, removable=True)
        self.attachments.setAccessibleName("Attachments of the next message")
        self.edit.files_dropped.connect(self.files_dropped)
        self.edit.image_pasted.connect(self.image_pasted)
        side = QVBoxLayout()
        side.addWidget(self.send_button)
        side.addWidget(self.stop_button)
        side.addWidget(self.thinking)
        row = QHBoxLayout()
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.edit, 1)
        row.addLayout(side)
        flush_box(QVBoxLayout, self, self.editing_bar, self.attachments, row)
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
        """The message was accepted: clear the box (and its attachments, unless it was an edit) and end any edit."""
        if self.editing is None:
            self.attachments.set_attachments(())
        self.editing = None
        self._draft = ""
        self.editing_bar.hide()
        self.edit.clear()

    def add_attachment(self, prepared: Prepared) -> None:
        self.attachments.add(prepared)

    def pending_attachments(self) -> tuple[Attachment, ...]:
        """What goes with the next new message, in the order attached."""
        return self.attachments.attachments()

    def set_attach_refusal(self, why: str | None) -> None:
        """The loaded model takes no attachments at all: say why on the button (it stays clickable, and
        explains itself again when clicked)."""
        self.attach_button.setToolTip(why or "Attach images or audio (or drop files here, or paste a picture)")

    def escape(self) -> None:
        """Esc: end an edit if one is open, else stop the reply."""
        if self.editing is not None:
            self.cancel_edit()
        else:
            self.stop.emit()

    def _submit(self) -> None:
        text = self.edit.toPlainText().strip()
        if text or (self.editing is None and self.pending_attachments()):
            self.send.emit(text, self.editing)
