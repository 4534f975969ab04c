"""Help → Keyboard shortcuts: every menu action that has a shortcut (read from the menus, so the list cannot
drift from what the keys do) and the keys that act inside a widget (Enter, Esc, F2 …)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMenu,
    QMenuBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# Keys handled by widgets rather than menu actions: (key, what it does).
WIDGET_KEYS = (
    ("Enter", "Send the message"),
    ("Shift+Enter", "New line in the message"),
    ("Esc", "Stop the reply that is being written; cancel an edit; on the Models page, back to the chat"),
    ("Ctrl+F", "Search the chats"),
    ("Ctrl+,", "Show or hide the chat settings (system prompt, presets, sampling)"),
    ("F2", "Rename the selected chat"),
    ("Delete", "Delete the selected chat (asks first)"),
)


def menu_shortcuts(menu_bar: QMenuBar) -> list[tuple[str, str]]:
    """(key, action) for every action in the menus that has a shortcut, in menu order."""
    out: list[tuple[str, str]] = []

    def walk(actions: list[QAction], path: str) -> None:
        for action in actions:
            name = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").strip()
            menu = action.menu()
            if isinstance(menu, QMenu):
                walk(menu.actions(), f"{path}{name} → ")
            elif not action.shortcut().isEmpty():
                out.append((action.shortcut().toString(QKeySequence.SequenceFormat.NativeText), path + name))

    walk(menu_bar.actions(), "")
    return out


def all_shortcuts(menu_bar: QMenuBar) -> list[tuple[str, str]]:
    return [*menu_shortcuts(menu_bar), *WIDGET_KEYS]


class ShortcutsDialog(QDialog):
    def __init__(self, menu_bar: QMenuBar, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shortcuts-dialog")
        self.setWindowTitle("Keyboard shortcuts")
        rows = all_shortcuts(menu_bar)
        self.table = QTableWidget(len(rows), 2)
        self.table.setAccessibleName("Keyboard shortcuts")
        self.table.setHorizontalHeaderLabels(["Key", "What it does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        for i, (key, what) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(key))
            self.table.setItem(i, 1, QTableWidgetItem(what))
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.resizeRowsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(560, 460)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def rows(self) -> list[tuple[str, str]]:
        def text(row: int, col: int) -> str:
            item = self.table.item(row, col)
            return item.text() if item is not None else ""

        return [(text(i, 0), text(i, 1)) for i in range(self.table.rowCount())]
