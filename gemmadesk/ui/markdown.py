"""Qt views for model output: :class:`SafeBrowser` (never loads a resource, never follows a link by itself)
and :class:`MarkdownView`, which shows a message rendered by :mod:`gemmadesk.core.markdown_render`, appending
finished pieces once and replacing only the streaming tail. A message is never left blank: a failure
falls back to the whole text as plain text.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import QTextBlockFormat, QTextCharFormat, QTextCursor, QTextDocument, QTextDocumentFragment
from PySide6.QtWidgets import QTextBrowser, QWidget

from gemmadesk.core.markdown_render import (
    CURSOR,
    MarkdownRenderer,
    Rendered,
    Update,
    render_markdown,
    warm_up,
)

__all__ = ["MarkdownView", "Rendered", "SafeBrowser", "render_markdown", "warm_up"]

log = logging.getLogger(__name__)

# While streaming, a render that took longer than THROTTLE_FROM_S is not repeated for THROTTLE_FACTOR times
# its cost (the newest text waits on a timer): an expensive tail (pathological input, a slow machine) can
# take at most about a fifth of the GUI thread. The finished text is always shown at once.
THROTTLE_FROM_S = 0.015
THROTTLE_FACTOR = 4.0
# A finished text with more than this many characters not shown yet (a long reply when a chat is opened) is
# shown in steps of half as many, one per event-loop turn, so the window never freezes for the whole of it.
PROGRESSIVE_CHARS = 8000


class SafeBrowser(QTextBrowser):
    """A read-only rich-text view that never loads a resource and never follows a link by itself.

    ``link_clicked`` reports every click; the owner decides (copy a code block, open http(s) in the
    system browser). ``loadResource`` returning None means no image, stylesheet or file is ever read.
    """

    link_clicked = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self.link_clicked)

    def loadResource(self, type: int, name: QUrl | str) -> object:  # noqa: A002 - Qt's signature
        return None


def _plain_block(cursor: QTextCursor) -> None:
    cursor.setBlockFormat(QTextBlockFormat())
    cursor.setBlockCharFormat(QTextCharFormat())
    cursor.setCharFormat(QTextCharFormat())
    text_list = cursor.currentList()
    if text_list is not None:
        text_list.remove(cursor.block())


class MarkdownView(SafeBrowser):
    """Shows one message's Markdown, appending finished pieces and replacing only the tail on each update.

    Qt detail: a fragment inserted into an empty block loses its first block's format (a heading becomes a
    paragraph), so each piece is inserted after an empty leading block that merges into the end of the
    piece before it; at the very start of the document Qt keeps the format, so none is added there.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._renderer = MarkdownRenderer()
        self._tail_start = 0
        self._plain = False  # showing the whole text as plain text after a failure
        self._pending: tuple[str, bool] | None = None  # (text, dark) waiting for the throttle timer
        self._next_at = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._show_pending)
        self._progress: tuple[str, bool] | None = None  # a long finished text being shown step by step
        self._step_timer = QTimer(self)
        self._step_timer.setSingleShot(True)
        self._step_timer.timeout.connect(self._show_step)

    @property
    def busy(self) -> bool:
        """Newer text is still waiting to be shown (throttled streaming, or a long text shown in steps)."""
        return self._pending is not None or self._progress is not None

    def show_markdown(self, text: str, *, streaming: bool = False, dark: bool = False) -> None:
        now = time.monotonic()
        if streaming and now < self._next_at:
            self._pending = (text, dark)
            if not self._timer.isActive():
                self._timer.start(max(1, int((self._next_at - now) * 1000)))
            return
        self._timer.stop()
        self._pending = None
        self._step_timer.stop()
        self._progress = None
        if not streaming and len(text) - len(self._shown_prefix(text, dark)) > PROGRESSIVE_CHARS:
            self._progress = (text, dark)  # e.g. a long reply when a chat is opened: never one long freeze
            self._show_step()
            return
        self._show(text, streaming, dark)
        cost = time.monotonic() - now
        self._next_at = now + cost * (1 + THROTTLE_FACTOR) if streaming and cost > THROTTLE_FROM_S else 0.0

    def _shown_prefix(self, text: str, dark: bool) -> str:
        """What of ``text`` is already shown and can stay (empty when the view must start again)."""
        shown = self._renderer.text
        if self._plain or dark != self._renderer.dark or self._renderer.finished or not text.startswith(shown):
            return ""
        return shown

    def _show_step(self) -> None:
        if self._progress is None:
            return
        text, dark = self._progress
        end = len(self._shown_prefix(text, dark)) + PROGRESSIVE_CHARS // 2
        newline = text.find("\n", end, end + 2000)
        end = newline + 1 if newline >= 0 else end
        if end >= len(text):
            self._progress = None
            self._show(text, False, dark)
            return
        self._show(text[:end], True, dark, cursor=False)
        self._step_timer.start(0)

    def _show_pending(self) -> None:
        if self._pending is not None:
            text, dark = self._pending
            self._pending = None
            self._next_at = 0.0
            self.show_markdown(text, streaming=True, dark=dark)

    def _show(self, text: str, streaming: bool, dark: bool, *, cursor: bool = True) -> None:
        try:
            if dark != self._renderer.dark or self._plain:  # start again: new colours, or after a failure
                self._renderer = MarkdownRenderer(dark)
                self._plain = False
                self.document().clear()
                self._tail_start = 0
            self._apply(self._renderer.update(text, final=not streaming), streaming and cursor)
        except Exception:
            log.exception("showing a message of %d characters failed; shown as plain text", len(text))
            self._renderer = MarkdownRenderer(dark)
            self._plain = True
            self._progress = None
            self.setPlainText(text + CURSOR if streaming and cursor else text)

    def code_block(self, index: int) -> str | None:
        return None if self._plain else self._renderer.code_block(index)

    def code_blocks(self) -> list[str]:
        return [] if self._plain else self._renderer.code_blocks()

    def _apply(self, update: Update, streaming: bool) -> None:
        doc = self.document()
        cursor = QTextCursor(doc)
        cursor.beginEditBlock()
        try:
            if update.reset:
                doc.clear()
                self._tail_start = 0
            cursor.setPosition(min(self._tail_start, doc.characterCount() - 1))
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            if cursor.block().length() == 1:  # an empty block keeps the format of what was removed
                _plain_block(cursor)
            for piece_html in update.commit:
                self._insert(cursor, piece_html)
            self._tail_start = cursor.position()
            for piece_html in update.tail:
                self._insert(cursor, piece_html)
            if streaming:
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(CURSOR, QTextCharFormat())
        finally:
            cursor.endEditBlock()

    def _insert(self, cursor: QTextCursor, piece_html: str) -> None:
        if not piece_html:
            return
        doc = self.document()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        piece = QTextDocument()
        piece.setDefaultFont(doc.defaultFont())
        piece.setHtml(piece_html)
        if not doc.isEmpty():
            head = QTextCursor(piece)
            frames = piece.rootFrame().childFrames()
            # A piece that starts with a table already starts with an empty block (Qt puts one before it).
            if not (piece.begin().length() == 1 and frames and frames[0].firstPosition() <= 2):
                head.insertBlock()  # the empty leading block that merges into the end of the piece before
                head.movePosition(QTextCursor.MoveOperation.Start)
            _plain_block(head)
        cursor.insertFragment(QTextDocumentFragment(piece))
