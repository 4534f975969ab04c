"""The open conversation as a Qt list model over plain :class:`Message` dataclasses.

Streaming appends to the last message and emits ``dataChanged`` for that one row only, so views
repaint one bubble per batch of tokens, never the whole transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from gemmadesk.core.history import Message as Row
from gemmadesk.core.types import Attachment, ReplyDone, TextChunk

_Index = QModelIndex | QPersistentModelIndex

ROLE_ROLE = Qt.ItemDataRole.UserRole + 1
THOUGHTS_ROLE = Qt.ItemDataRole.UserRole + 2
STATS_ROLE = Qt.ItemDataRole.UserRole + 3
STREAMING_ROLE = Qt.ItemDataRole.UserRole + 4
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 5


@dataclass
class Message:
    role: str  # "user" | "assistant" | "system"
    content: str
    thoughts: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    streaming: bool = False
    error: str = ""
    id: int | None = None  # the history store's row id once saved
    interrupted: bool = False  # a reply left unfinished by an earlier run (closed or crashed while writing)
    attachments: tuple[Attachment, ...] = ()  # images/audio of a user message (files in the attachment store)


class TranscriptModel(QAbstractListModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._messages: list[Message] = []

    # ------------------------------------------------------------------ plain-data API
    def messages(self) -> list[Message]:
        return [replace(m) for m in self._messages]

    def message(self, row: int) -> Message:
        return self._messages[row]

    def set_messages(self, messages: list[Message]) -> None:
        self.beginResetModel()
        self._messages = list(messages)
        self.endResetModel()

    def append(self, message: Message) -> int:
        row = len(self._messages)
        self.beginInsertRows(QModelIndex(), row, row)
        self._messages.append(message)
        self.endInsertRows()
        return row

    def append_to_last(self, answer: str = "", thought: str = "") -> None:
        """Streaming: grow the last message and signal that one row."""
        if not self._messages:
            return
        last = self._messages[-1]
        last.content += answer
        last.thoughts += thought
        self._changed(len(self._messages) - 1)

    def apply_stream_event(self, event: object) -> None:
        """A reply's text as it streams (:class:`TextChunk`), then its final text and stats (:class:`ReplyDone`)."""
        if isinstance(event, TextChunk):
            self.append_to_last(**{"thought" if event.kind == "thought" else "answer": event.text})
        elif isinstance(event, ReplyDone):
            self.update_last(content=event.answer, thoughts=event.thoughts, stats=event.stats.to_dict(),
                             streaming=False)

    def update_last(self, **changes: Any) -> None:
        if not self._messages:
            return
        last = self._messages[-1]
        for key, value in changes.items():
            setattr(last, key, value)
        self._changed(len(self._messages) - 1)

    def truncate(self, row: int) -> list[Message]:
        """Remove ``row`` and everything after it (regenerate, edit-and-resend); returns what went."""
        if row >= len(self._messages):
            return []
        self.beginRemoveRows(QModelIndex(), row, len(self._messages) - 1)
        removed = self._messages[row:]
        del self._messages[row:]
        self.endRemoveRows()
        return removed

    def _changed(self, row: int) -> None:
        index = self.index(row, 0)
        self.dataChanged.emit(index, index)

    # ------------------------------------------------------------------ Qt interface
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._messages)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._messages)):
            return None
        m = self._messages[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return m.content
        if role == ROLE_ROLE:
            return m.role
        if role == THOUGHTS_ROLE:
            return m.thoughts
        if role == STATS_ROLE:
            return dict(m.stats)
        if role == STREAMING_ROLE:
            return m.streaming
        if role == MESSAGE_ROLE:
            return m
        return None


def message_of(m: Row, streaming: bool = False, running: int | None = None) -> Message:
    """A history row as the transcript shows it. ``running``: the id of the reply being written now (a
    "partial" row that is not an interrupted one)."""
    interrupted = m.status == "partial" and not m.stats and not streaming and m.id != running
    return Message(m.role, m.content, m.thoughts, dict(m.stats), error="", id=m.id, streaming=streaming,
                   interrupted=interrupted, attachments=m.attachments)
