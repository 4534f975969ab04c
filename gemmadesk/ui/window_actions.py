"""The window's file actions and preferences: Import… (a GGUF model or a chat export, also by dropping files
on the window), Export chat… (Markdown or JSON), Export all chats… (JSON), View → Theme (system, light,
dark; applied at once and saved), Help → Keyboard shortcuts.

File dialogs are opened window-modal (``open()``, never a nested event loop); reading and writing files
runs on the thread pool, and the result or the error comes back as a notice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMenuBar

from gemmadesk.core.history_io import ImportResult, export_file_name, import_file, write_export
from gemmadesk.ui.app import apply_theme
from gemmadesk.ui.notice import NoticeLevel
from gemmadesk.ui.shortcuts import ShortcutsDialog
from gemmadesk.ui.tasks import TaskError

if TYPE_CHECKING:
    from gemmadesk.ui.main_window import MainWindow

IMPORTABLE = (".gguf", ".json")
THEMES = (("system", "&System"), ("light", "&Light"), ("dark", "&Dark"))


def importable(path: Path) -> bool:
    return path.suffix.lower() in IMPORTABLE


class WindowActions(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: QFileDialog | None = None  # the open file dialog, if any
        self.theme_actions: dict[str, QAction] = {}
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.last_folder = Path.home()  # where file dialogs open: the home folder, then the last one used
        window.setAcceptDrops(True)
        window.installEventFilter(self)

        self.import_action = self._action("&Import…", self.choose_import, QKeySequence.StandardKey.Open,
                                          "Import a GGUF model, or chats exported from GemmaDesk (JSON)")
        self.export_action = self._action("&Export chat…", lambda: self.choose_export(), QKeySequence("Ctrl+E"),
                                          "Save the open chat as Markdown or JSON")
        self.export_all_action = self._action("Export &all chats…", self.choose_export_all,
                                              QKeySequence("Ctrl+Shift+E"), "Save every chat in one JSON file")

    def _action(self, text: str, slot: Callable[[], None], key: QKeySequence | QKeySequence.StandardKey,
                tip: str) -> QAction:  # fmt: skip
        action = QAction(text, self.window)
        action.setShortcut(key)
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.triggered.connect(slot)
        return action

    # ------------------------------------------------------------------ menus
    def fill_file_menu(self, menu: QMenu) -> None:
        for action in (self.import_action, self.export_action, self.export_all_action):
            menu.addAction(action)
        menu.addSeparator()

    def add_view_menu(self, bar: QMenuBar) -> QMenu:
        view = bar.addMenu("&View")
        theme = view.addMenu("&Theme")
        group = QActionGroup(self)
        current = self.window.settings.theme if self.window.settings.theme in ("light", "dark") else "system"
        for name, label in THEMES:
            action = QAction(label, self.window, checkable=True)
            action.setChecked(current == name)
            action.triggered.connect(lambda _checked=False, n=name: self.set_theme(n))
            group.addAction(action)
            theme.addAction(action)
            self.theme_actions[name] = action
        return view

    def fill_help_menu(self, menu: QMenu) -> None:
        keys = self._action("&Keyboard shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents,
                            "Every keyboard shortcut")
        menu.addAction(keys)

    def show_shortcuts(self) -> None:
        self.shortcuts_dialog = ShortcutsDialog(self.window.menuBar(), self.window)
        self.shortcuts_dialog.open()

    def set_theme(self, theme: str) -> None:
        """Apply ``theme`` now and keep it for the next start."""
        self.theme_actions[theme if theme in self.theme_actions else "system"].setChecked(True)
        apply_theme(theme)
        if self.window.settings.theme != theme:
            self.window.settings.theme = theme
            self.window.save_settings()

    # ------------------------------------------------------------------ import
    def choose_import(self) -> None:
        self._open_dialog("Import a model or chats", QFileDialog.AcceptMode.AcceptOpen,
                          "GGUF models and chat exports (*.gguf *.json);;GGUF models (*.gguf);;"
                          "GemmaDesk chat exports (*.json)", "", self.import_path)

    def import_path(self, path: Path) -> None:
        """A .gguf is imported as a model (the Installed tab), a .json as chats; anything else is explained."""
        path = Path(path)
        if path.suffix.lower() == ".gguf":
            self.window.installed.import_gguf(path)
        elif path.suffix.lower() == ".json":
            history = self.window.chat.history
            self.window.tasks.run(lambda: import_file(history, path), self._chats_imported,
                                  lambda error: self._failed(error, "Nothing was imported; check the file."),
                                  name="import chats")  # fmt: skip
        else:
            self._tell(NoticeLevel.WARNING, f"{path.name} was not imported: GemmaDesk imports GGUF models (.gguf) "
                       "and its own chat exports (.json).", "Choose a .gguf or .json file.")

    def _chats_imported(self, result: ImportResult) -> None:
        chat = self.window.chat
        chat.refresh_conversations()
        if result.conversation_ids and not chat.busy:  # never interrupts a reply being written
            self.window.show_chat()
            chat.open_conversation(result.conversation_ids[0])
        self._tell(NoticeLevel.INFO, result.summary(), "They are in the list on the left; your other chats are "
                   "unchanged.")

    # ------------------------------------------------------------------ export
    def choose_export(self, conversation_id: int | None = None, fmt: str = "md") -> None:
        """Export one chat (the open one by default); the dialog offers Markdown and JSON."""
        chat = self.window.chat
        cid = conversation_id if conversation_id is not None else chat.conversation_id
        if cid is None:
            self._tell(NoticeLevel.INFO, "No chat is open to export.", "Open a chat on the left first.")
            return
        try:
            title = chat.history.get_conversation(cid).title
        except Exception as exc:  # a chat deleted meanwhile: one sentence
            self._tell(NoticeLevel.ERROR, str(exc), "Pick another chat.")
            return
        filters = "Markdown (*.md);;JSON (*.json)" if fmt == "md" else "JSON (*.json);;Markdown (*.md)"
        self._open_dialog("Export chat", QFileDialog.AcceptMode.AcceptSave, filters, export_file_name(title, fmt),
                          lambda path: self.export_to(path, cid))

    def choose_export_all(self) -> None:
        self._open_dialog("Export all chats", QFileDialog.AcceptMode.AcceptSave, "JSON (*.json)",
                          "GemmaDesk chats.json", lambda path: self.export_to(path, None))

    def export_to(self, path: Path, conversation_id: int | None) -> None:
        """Write the export on the thread pool: Markdown for a ``.md`` path, else JSON."""
        path = Path(path)
        fmt = "md" if path.suffix.lower() == ".md" and conversation_id is not None else "json"
        if not path.suffix:
            path = path.with_suffix(".md" if fmt == "md" else ".json")
        history = self.window.chat.history
        what = "every chat" if conversation_id is None else "the chat"
        self.window.tasks.run(lambda: write_export(history, path, conversation_id, fmt),
                              lambda size: self._tell(NoticeLevel.INFO, f"Exported {what} to {path}.", ""),
                              lambda error: self._failed(error, "Choose another folder, or check the free space."),
                              name="export chats")  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def _open_dialog(self, title: str, mode: QFileDialog.AcceptMode, filters: str, name: str,
                     chosen: Callable[[Path], None]) -> QFileDialog:  # fmt: skip
        if self.dialog is not None:
            self.dialog.close()
        dialog = QFileDialog(self.window, title, str(self.last_folder))
        dialog.setObjectName("file-dialog")
        dialog.setAcceptMode(mode)
        dialog.setNameFilters(filters.split(";;"))
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile if mode == QFileDialog.AcceptMode.AcceptOpen
                           else QFileDialog.FileMode.AnyFile)  # fmt: skip
        if name:
            dialog.selectFile(name)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(lambda file: self._chosen(Path(file), chosen))
        dialog.finished.connect(lambda _code: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _chosen(self, path: Path, then: Callable[[Path], None]) -> None:
        self.last_folder = path.parent  # the next dialog opens there
        then(path)

    def _tell(self, level: NoticeLevel, text: str, next_step: str) -> None:
        self.window.notice.show_message(text, level, next_step)

    def _failed(self, error: TaskError, next_step: str) -> None:
        self._tell(NoticeLevel.ERROR, str(error), next_step)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Files dropped on the window: .gguf models and .json chat exports are imported."""
        if watched is self.window and event.type() in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            assert isinstance(event, QDragEnterEvent | QDropEvent)
            if self._dropped_files(event):
                event.acceptProposedAction()
                return True
        elif watched is self.window and event.type() == QEvent.Type.Drop:
            assert isinstance(event, QDropEvent)
            files = self._dropped_files(event)
            if files:
                event.acceptProposedAction()
                for path in files:
                    self.import_path(path)
                return True
        return super().eventFilter(watched, event)

    @staticmethod
    def _dropped_files(event: QDropEvent) -> list[Path]:
        mime = event.mimeData()
        if mime is None or not mime.hasUrls():
            return []
        paths = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
        return paths if paths and all(importable(p) for p in paths) else []
