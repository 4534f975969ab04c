"""A non-blocking message strip: what went wrong and what to do next, with an optional action button."""

from __future__ import annotations

import html
from collections.abc import Callable
from enum import StrEnum

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from gemmadesk.ui.widgets import push_button


class NoticeLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LEVEL_COLOURS = {
    NoticeLevel.INFO: ("#e3f2fd", "#0d47a1"),
    NoticeLevel.WARNING: ("#fff3e0", "#8a4b00"),
    NoticeLevel.ERROR: ("#ffebee", "#b71c1c"),
}


class NoticeBar(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("NoticeBar")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setOpenExternalLinks(False)
        self.label.setAccessibleName("Notice")
        self.action_button = QPushButton()
        self.close_button = push_button("Dismiss", "Dismiss notice", self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(self.close_button)
        self._action: Callable[[], None] | None = None
        self.action_button.clicked.connect(self._run_action)
        self.level = NoticeLevel.INFO
        self.hide()

    def show_message(
        self,
        text: str,
        level: str = NoticeLevel.ERROR,
        next_step: str = "",
        action: tuple[str, Callable[[], None]] | None = None,
    ) -> None:
        """Show ``text`` (plain, escaped) and the suggested ``next_step``; replaces any earlier notice."""
        self.level = NoticeLevel(level) if level in set(NoticeLevel) else NoticeLevel.INFO
        bg, fg = LEVEL_COLOURS[self.level]
        self.setStyleSheet(f"#NoticeBar {{ background: {bg}; border-radius: 4px; }} QLabel {{ color: {fg}; }}")
        body = f"<b>{html.escape(text)}</b>"
        if next_step:
            body += f"<br>{html.escape(next_step)}"
        self.label.setText(body)
        if action is None:
            self._action = None
            self.action_button.hide()
        else:
            self.action_button.setText(action[0])
            self._action = action[1]
            self.action_button.show()
        self.show()

    def text(self) -> str:
        return self.label.text()

    def _run_action(self) -> None:
        if self._action is not None:
            self._action()
