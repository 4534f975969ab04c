"""The sidebar's conversation list: a Qt list model over the history's plain Conversation records.

Titles are edited in place (F2 / double-click / the Rename button); the edit is reported through
``rename_requested`` so that the controller, not the model, writes to the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from gemmadesk.core.history import Conversation, SearchHit
from gemmadesk.ui.richtext import plain_tooltip

_Index = QModelIndex | QPersistentModelIndex
CONVERSATION_ID_ROLE = Qt.ItemDataRole.UserRole + 1
SNIPPET_ROLE = Qt.ItemDataRole.UserRole + 2  # the matching text while searching ("" otherwise)


@dataclass(frozen=True)
class SearchView:
    """What a search found, as the sidebar and the transcript show it."""

    snippets: dict[int, str] = field(default_factory=dict)  # conversation id -> its matching text
    matches: dict[int, list[int]] = field(default_factory=dict)  # conversation id -> its matching message ids
    terms: list[str] = field(default_factory=list)  # what to highlight

    @classmethod
    def of(cls, hits: list[SearchHit]) -> SearchView:
        view = cls(terms=list(hits[0].terms) if hits else [])
        for h in hits:
            view.snippets.setdefault(h.conversation_id, h.snippet)
            if h.message_id is not None:
                view.matches.setdefault(h.conversation_id, []).append(h.message_id)
        return view


class ConversationListModel(QAbstractListModel):
    rename_requested = Signal(int, str)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[Conversation] = []
        self.search = SearchView()  # while searching: each conversation's matching text, the terms

    @property
    def terms(self) -> list[str]:
        return self.search.terms

    def set_conversations(self, items: list[Conversation], search: SearchView | None = None) -> None:
        self.beginResetModel()
        self._items = list(items)
        self.search = search or SearchView()
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
        if role == SNIPPET_ROLE:
            return self.search.snippets.get(c.id, "")
        return None

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or not str(value).strip():
            return False
        self.rename_requested.emit(self._items[index.row()].id, str(value).strip())
        return True
