"""The transcript view: one bubble per message of a :class:`TranscriptModel`, kept in step with its signals.

Each bubble shows its Markdown in a :class:`MarkdownView` (no remote loads, no HTML from the model; while
a reply streams only its growing tail is re-rendered). Code blocks carry a "Copy" link; other links open in
the system browser only when clicked, and only for http(s)/mailto. Everything else a bubble shows (name,
statistics, an error) is plain text: a label never interprets model- or file-controlled text as HTML.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.ui.attachments import AttachmentJobs, AttachmentStrip
from gemmadesk.ui.markdown import MarkdownView, warm_up
from gemmadesk.ui.transcript_model import Message, TranscriptModel

STOP_WORDS = {"stopped": "stopped", "length": "hit max tokens", "context_full": "context full"}
USER_BUBBLE = "#MessageBubble { border-radius: 8px; background: rgba(127,127,127,0.12) }"
_Index = QModelIndex | QPersistentModelIndex


def is_dark(widget: QWidget) -> bool:
    return widget.palette().window().color().lightness() < 128


def format_stats(stats: dict[str, object]) -> str:
    """Unobtrusive per-reply numbers: speed, time to first token, tokens, why it stopped."""
    if not stats:
        return ""
    parts = []
    tps = stats.get("generated_tokens_per_s")
    if isinstance(tps, int | float) and tps > 0:
        parts.append(f"{tps:.1f} tok/s")
    ttft = stats.get("time_to_first_token_s")
    if isinstance(ttft, int | float) and ttft > 0:
        parts.append(f"first token {ttft:.2f} s")
    tokens = stats.get("completion_tokens")
    if tokens:
        parts.append(f"{tokens} tokens")
    reason = stats.get("stop_reason")
    if reason in ("stopped", "length", "context_full"):
        parts.append(STOP_WORDS[str(reason)])
    return " · ".join(parts)


class AutoHeightBrowser(MarkdownView):
    """A MarkdownView as tall as its content, so bubbles stack in one scroll area."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def _fit(self) -> None:
        bar = self.horizontalScrollBar()
        extra = bar.sizeHint().height() if bar.isVisible() else 0
        self.setFixedHeight(int(self.document().size().height()) + 6 + extra)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        width = self.viewport().width()
        if width != self.document().textWidth():  # a new width re-lays out the whole text: only when it changed
            self.document().setTextWidth(width)
        self._fit()


class MessageBubble(QFrame):
    regenerate = Signal()
    edit = Signal()
    view_image = Signal(object)  # Attachment

    def __init__(self, parent: QWidget | None = None, jobs: AttachmentJobs | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageBubble")
        self.attachments = AttachmentStrip(jobs)  # thumbnails (click: view large) and audio (click: play)
        self.attachments.setAccessibleName("Attachments")
        self.attachments.view_requested.connect(self.view_image)
        self.who = QLabel()
        self.who.setTextFormat(Qt.TextFormat.RichText)  # fixed text only: "<b>Gemma</b>" / "<b>You</b>"
        self.stats = QLabel()
        self.stats.setTextFormat(Qt.TextFormat.PlainText)
        self.stats.setAccessibleName("Reply statistics")
        self.stats.setStyleSheet("color: gray; font-size: 11px")
        self.thoughts_toggle = QToolButton()
        self.thoughts_toggle.setCheckable(True)
        self.thoughts_toggle.setAutoRaise(True)
        self.thoughts_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.thoughts_toggle.setAccessibleName("Show or hide the model's thoughts")
        self.thoughts_toggle.toggled.connect(self._toggle_thoughts)
        self.thoughts = AutoHeightBrowser()
        self.thoughts.setAccessibleName("Model thoughts")
        self.thoughts.setStyleSheet("color: gray")
        self.thoughts.hide()
        self.body = AutoHeightBrowser()
        self.body.setAccessibleName("Message text")
        self.body.link_clicked.connect(self._link)
        self.error = QLabel()  # model- or file-controlled text (a template's raise_exception): plain text only
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet("color: #c62828")
        self.error.setAccessibleName("Error")
        self.error.hide()
        self.regen_button = QPushButton("Regenerate")
        self.regen_button.setAccessibleName("Regenerate this reply")
        self.regen_button.clicked.connect(self.regenerate)
        self.edit_button = QPushButton("Edit")
        self.edit_button.setAccessibleName("Edit this message and send it again")
        self.edit_button.clicked.connect(self.edit)
        for b in (self.regen_button, self.edit_button):
            b.setFlat(True)
        head = QHBoxLayout()
        head.addWidget(self.who)
        head.addWidget(self.thoughts_toggle)
        head.addStretch(1)
        head.addWidget(self.stats)
        head.addWidget(self.edit_button)
        head.addWidget(self.regen_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(head)
        layout.addWidget(self.attachments)
        layout.addWidget(self.thoughts)
        layout.addWidget(self.body)
        layout.addWidget(self.error)
        self._last_text: tuple[str, bool, bool] | None = None
        self._last_thoughts: tuple[str, bool, bool] | None = None

    def show_message(self, m: Message, is_last: bool, busy: bool) -> None:
        assistant = m.role == "assistant"
        self.who.setText("<b>Gemma</b>" if assistant else "<b>You</b>")
        sheet = "" if assistant else USER_BUBBLE
        if self.styleSheet() != sheet:  # a new style sheet re-polishes every child: not on every batch
            self.setStyleSheet(sheet)
        dark = is_dark(self)
        shown = (m.content, m.streaming, dark)
        if shown != self._last_text:
            self._last_text = shown
            self.body.show_markdown(m.content, streaming=m.streaming, dark=dark)
        self.attachments.set_attachments(m.attachments)
        self.body.setVisible(bool(m.content) or assistant)  # a message of attachments only has no text
        self.error.setText(m.error)
        self.error.setVisible(bool(m.error))
        thinking = (m.thoughts, m.streaming and not m.content, dark)
        if thinking != self._last_thoughts:
            self._last_thoughts = thinking
            self.thoughts.show_markdown(m.thoughts, streaming=thinking[1] and bool(m.thoughts), dark=dark)
        self.thoughts_toggle.setVisible(bool(m.thoughts))
        self._toggle_thoughts(self.thoughts_toggle.isChecked())
        self.stats.setText(format_stats(m.stats))
        self.regen_button.setVisible(assistant and is_last and not busy)
        self.edit_button.setVisible(not assistant and not busy)

    def _toggle_thoughts(self, shown: bool) -> None:
        self.thoughts_toggle.setText("▾ Thoughts" if shown else "▸ Thoughts")
        self.thoughts.setVisible(shown and bool(self._last_thoughts and self._last_thoughts[0]))

    def _link(self, url: QUrl) -> None:
        if url.scheme() == "copy":
            path = url.path()
            code = self.body.code_block(int(path)) if path.isdigit() and len(path) < 9 else None
            if code is not None:
                QGuiApplication.clipboard().setText(code)
        elif url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)


class MessageView(QScrollArea):
    regenerate_requested = Signal()
    edit_requested = Signal(int)  # row
    image_requested = Signal(object)  # Attachment: show it large

    def __init__(self, model: TranscriptModel, parent: QWidget | None = None,
                 jobs: AttachmentJobs | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.jobs = jobs
        self.setAccessibleName("Conversation")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._inner = QWidget()
        self._layout = QVBoxLayout(self._inner)
        self._layout.addStretch(1)
        self.setWidget(self._inner)
        self.bubbles: list[MessageBubble] = []
        self.busy = False
        self.model = model
        warm_up()
        model.modelReset.connect(self._rebuild)
        model.rowsInserted.connect(self._inserted)
        model.rowsRemoved.connect(self._removed)
        model.dataChanged.connect(self._changed)
        self.verticalScrollBar().rangeChanged.connect(self._follow)
        self._stick = True
        self.verticalScrollBar().valueChanged.connect(self._track_bottom)
        self._rebuild()

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self._refresh(0, len(self.bubbles) - 1)

    def _make(self, row: int) -> MessageBubble:
        bubble = MessageBubble(jobs=self.jobs)
        bubble.regenerate.connect(self.regenerate_requested)
        bubble.view_image.connect(self.image_requested)
        bubble.edit.connect(lambda b=bubble: self.edit_requested.emit(self.bubbles.index(b)))
        return bubble

    def _rebuild(self) -> None:
        for bubble in self.bubbles:
            bubble.deleteLater()
        self.bubbles = []
        self._inserted(QModelIndex(), 0, self.model.rowCount() - 1)
        self._stick = True

    def _inserted(self, _parent: _Index, first: int, last: int) -> None:
        for row in range(first, last + 1):
            bubble = self._make(row)
            self.bubbles.insert(row, bubble)
            self._layout.insertWidget(row, bubble)
        self._refresh(max(first - 1, 0), len(self.bubbles) - 1)

    def _removed(self, _parent: _Index, first: int, last: int) -> None:
        for bubble in self.bubbles[first : last + 1]:
            self._layout.removeWidget(bubble)
            bubble.deleteLater()
        del self.bubbles[first : last + 1]
        self._refresh(max(first - 1, 0), len(self.bubbles) - 1)

    def _changed(self, top: _Index, bottom: _Index) -> None:
        self._refresh(top.row(), bottom.row())

    def _refresh(self, first: int, last: int) -> None:
        n = len(self.bubbles)
        for row in range(max(first, 0), min(last, n - 1) + 1):
            self.bubbles[row].show_message(self.model.message(row), row == n - 1, self.busy)

    def _track_bottom(self, value: int) -> None:
        self._stick = value >= self.verticalScrollBar().maximum() - 24

    def _follow(self, _min: int, maximum: int) -> None:
        """Keep the newest text in view while streaming, unless the user scrolled up to read."""
        if self._stick:
            bar = self.verticalScrollBar()
            QTimer.singleShot(0, lambda: bar.setValue(bar.maximum()))
