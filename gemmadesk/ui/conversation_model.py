"""The sidebar's conversation list: a Qt list model over the history's plain Conversation records.

Titles are edited in place (F2 / double-click / the Rename button); the edit is reported through
``rename_requested`` so that the controller, not the model, writes to the history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from gemmadesk.core.history import Conversation
from gemmadesk.ui.richtext import plain_tooltip

_Index = QModelIndex | QPersistentModelIndex
CONVERSATION_ID_ROLE = Qt.ItemDataRole.UserRole + 1


class ConversationListModel(QAbstractListModel):
    rename_requested = Signal(int, str)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[Conversation] = []

    def set_conversations(self, items: list[Conversation]) -> None:
        self.beginResetModel()
        self._items = list(items)
        self.endResetModel()

    def conversation(self, row: int) -> Conversation:
        return self._items[row]

    def row_of(self, conversation_id: int) -> int:
        return next((i for i, c in enumerate(self._items) if c.id == conversation_id), -1)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._items)):
            return None
        c = self._items[index.row()]
        R = Qt.ItemDataRole
        if role in (R.DisplayRole, R.EditRole, R.AccessibleTextRole):
            return c.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip(f"{c.title}\nlast active {datetime.fromtimestamp(c.updated_at):%Y-%m-%d %H:%M}")
        if role == CONVERSATION_ID_ROLE:
            return c.id
        return None

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or not str(value).strip():
            return False
        self.rename_requested.emit(self._items[index.row()].id, str(value).strip())
        return True
