"""The transcript view: one bubble per message of a :class:`TranscriptModel`, kept in step with its signals.

Each bubble shows its Markdown in a :class:`MarkdownView` (no remote loads, no HTML from the model; while
a reply streams only its growing tail is re-rendered). Code blocks carry a "Copy" link; other links open in
the system browser only when clicked, and only for http(s)/mailto. Everything else a bubble shows (name,
statistics, an error) is plain text: a label never interprets model- or file-controlled text as HTML.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QModelIndex, QPersistentModelIndex, QRegularExpression, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.search_text import highlight_pattern
from gemmadesk.ui.attachments import AttachmentJobs, AttachmentStrip
from gemmadesk.ui.conversation_delegate import HIGHLIGHT
from gemmadesk.ui.markdown import MarkdownView, warm_up
from gemmadesk.ui.transcript_model import Message, TranscriptModel
from gemmadesk.ui.widgets import plain_label, push_button

STOP_WORDS = {"stopped": "stopped", "length": "hit max tokens", "context_full": "context full"}
USER_BUBBLE = "#MessageBubble { border-radius: 8px; background: rgba(127,127,127,0.12) }"
MATCH_BUBBLE = "#MessageBubble { border-radius: 8px; border: 2px solid #f9a825 }"  # a search match
INTERRUPTED = "interrupted: this reply did not finish (GemmaDesk closed, crashed or failed while writing it)"
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
        self.error = plain_label()  # model- or file-controlled text (a template's raise_exception): plain text only
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet("color: #c62828")
        self.error.setAccessibleName("Error")
        self.error.hide()
        self.copy_button = push_button("Copy", "Copy this whole message", self.copy,
                                       tip="Copy the whole message (as Markdown)")
        self.regen_button = push_button("Regenerate", "Regenerate this reply", self.regenerate)
        self.edit_button = push_button("Edit", "Edit this message and send it again", self.edit)
        for b in (self.copy_button, self.regen_button, self.edit_button):
            b.setFlat(True)
        head = QHBoxLayout()
        head.addWidget(self.who)
        head.addWidget(self.thoughts_toggle)
        head.addStretch(1)
        head.addWidget(self.stats)
        head.addWidget(self.copy_button)
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
        self.content = ""  # the message's whole text (what Copy copies)
        self.matched = False  # a search match: framed, its matching words highlighted

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.content)

    def show_message(self, m: Message, is_last: bool, busy: bool) -> None:
        assistant = m.role == "assistant"
        self.content = m.content
        self.who.setText("<b>Gemma</b>" if assistant else "<b>You</b>")
        sheet = MATCH_BUBBLE if self.matched else "" if assistant else USER_BUBBLE
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
        self.stats.setText(INTERRUPTED if m.interrupted else format_stats(m.stats))
        self.stats.setStyleSheet("color: #b26a00; font-size: 11px" if m.interrupted else "color: gray; font-size: 11px")
        self.copy_button.setVisible(bool(m.content) and not m.streaming)
        self.regen_button.setVisible(assistant and is_last and not busy)
        self.edit_button.setVisible(not assistant and not busy)

    def highlight(self, terms: list[str]) -> int:
        """Mark the words that match ``terms`` in the shown text (no terms: clear); returns how many."""
        selections: list[QTextEdit.ExtraSelection] = []
        pattern = highlight_pattern(terms)
        if pattern:
            options = (QRegularExpression.PatternOption.CaseInsensitiveOption
                       | QRegularExpression.PatternOption.UseUnicodePropertiesOption)  # fmt: skip
            regex = QRegularExpression(pattern, options)
            cursor = self.body.document().find(regex)
            while not cursor.isNull() and len(selections) < 500:
                if cursor.hasSelection():
                    selection = QTextEdit.ExtraSelection()
                    selection.cursor = cursor
                    selection.format.setBackground(QColor(HIGHLIGHT))
                    selection.format.setForeground(QColor("black"))
                    selections.append(selection)
                cursor = self.body.document().find(regex, cursor)
        self.body.setExtraSelections(selections)
        return len(selections)

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
        self.hint = _Hint()  # what an empty chat says (set_hint); shown while there are no messages
        self._layout.addWidget(self.hint)
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
        self._match: tuple[list[int], list[str]] = ([], [])  # message ids and terms of a search, shown
        self._recolour = QTimer(self)
        self._recolour.setSingleShot(True)
        self._recolour.setInterval(0)
        self._recolour.timeout.connect(lambda: self._refresh(0, len(self.bubbles) - 1))
        self._rebuild()

    def set_hint(self, title: str, text: str) -> None:
        self.hint.title.setText(title)
        self.hint.text.setText(text)

    def highlight(self, message_ids: list[int], terms: list[str]) -> None:
        """Frame the messages that matched the search, mark the matching words, and scroll to the first."""
        self._match = (list(message_ids), list(terms))
        wanted = set(message_ids)
        first: MessageBubble | None = None
        for row, bubble in enumerate(self.bubbles):
            matched = self.model.message(row).id in wanted
            if matched != bubble.matched:
                bubble.matched = matched
                self._refresh(row, row)
            if matched and first is None:
                first = bubble
        self._apply_highlight(first, tries=20)

    def _apply_highlight(self, first: MessageBubble | None, tries: int) -> None:
        """Long messages are shown in steps: mark the words once the whole text is in the view."""
        if any(b.body.busy for b in self.bubbles) and tries > 0:
            QTimer.singleShot(50, self, lambda: self._apply_highlight(first, tries - 1))
            return
        for bubble in self.bubbles:
            bubble.highlight(self._match[1] if bubble.matched else [])
        if first is not None:
            self._stick = False
            QTimer.singleShot(0, self, lambda: self._scroll_to(first))

    def _scroll_to(self, bubble: MessageBubble) -> None:
        if bubble in self.bubbles:
            self.ensureWidgetVisible(bubble, 0, 40)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        """A new theme (View → Theme, or the system's): render every bubble again in its colours."""
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange, QEvent.Type.StyleChange):
            self._recolour.start()  # once every child has the new palette

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
        self._match = ([], [])
        self._inserted(QModelIndex(), 0, self.model.rowCount() - 1)
        self._stick = True

    def _inserted(self, _parent: _Index, first: int, last: int) -> None:
        for row in range(first, last + 1):
            bubble = self._make(row)
            self.bubbles.insert(row, bubble)
            self._layout.insertWidget(row + 1, bubble)  # after the hint
        self.hint.setVisible(not self.bubbles)
        self._refresh(max(first - 1, 0), len(self.bubbles) - 1)

    def _removed(self, _parent: _Index, first: int, last: int) -> None:
        for bubble in self.bubbles[first : last + 1]:
            self._layout.removeWidget(bubble)
            bubble.deleteLater()
        del self.bubbles[first : last + 1]
        self.hint.setVisible(not self.bubbles)
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


class _Hint(QWidget):
    """The empty chat's hint: a title and a sentence, plain text, centred."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("EmptyChatHint")
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.title.setFont(font)
        self.text = plain_label(name="What to do in an empty chat", style="color: gray")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 60, 24, 0)
        for label in (self.title, self.text):
            label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            layout.addWidget(label)
