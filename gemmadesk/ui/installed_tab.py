"""Wires the Models page's "Installed" tab: the panel, its controller, the chat, and the questions asked
first (delete: with what it frees; the models folder: a folder dialog)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox

from gemmadesk.core.store import InstalledModel
from gemmadesk.ui.installed_view import InstalledPanel
from gemmadesk.ui.models_controller import InstalledRow, ModelRemoved, ModelsController, removal_preview
from gemmadesk.ui.notice import NoticeLevel
from gemmadesk.ui.widgets import ask_first

if TYPE_CHECKING:
    from gemmadesk.ui.main_window import MainWindow


class InstalledTab(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        setup = window.setup
        self.controller = ModelsController(window.tasks, window.store, lambda: setup.hardware, lambda: setup.options,
                                           setup.catalog, self)  # fmt: skip
        self.panel = InstalledPanel()
        self.index = window.setup_page.add_tab(self.panel, "&Installed")
        self.confirm_box: QMessageBox | None = None
        self.closing = False
        window.installEventFilter(self)
        self.panel.set_folder(str(window.store.models_dir))
        self.panel.chat_requested.connect(window.open_chat)
        self.panel.delete_requested.connect(self.confirm_delete)
        self.panel.import_requested.connect(window.window_actions.choose_import)
        self.panel.change_folder_requested.connect(self.choose_folder)
        self.panel.open_folder_requested.connect(self.open_folder)
        c = self.controller
        c.rows_changed.connect(self._rows)
        c.imported.connect(self._imported)
        c.removed.connect(self._removed)
        c.failed.connect(lambda text: window.notice.show_message(text, NoticeLevel.ERROR, ""))
        c.folder_changed.connect(self._folder_changed)
        setup.hardware_ready.connect(lambda _hw: self.refresh())
        setup.plans_changed.connect(lambda _text: self.refresh())  # a new context or new speeds: new verdicts

    def refresh(self) -> None:
        """List again, unless the window is closing (no job may start after it waited for the pool)."""
        if not self.closing:
            self.controller.refresh()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.closing = True
        return False

    def _rows(self, rows: list[InstalledRow]) -> None:
        self.panel.set_rows(rows)
        self.window.setup_page.tabs.setTabText(self.index, f"&Installed ({len(rows)})" if rows else "&Installed")

    def show(self) -> None:
        self.window.show_setup()
        self.window.setup_page.tabs.setCurrentIndex(self.index)

    # ------------------------------------------------------------------ import
    def import_gguf(self, path: Path) -> None:
        self.window.notice.show_message(f"Checking {Path(path).name}…", NoticeLevel.INFO,
                                        "A model file is read and checked before it is listed.")
        self.controller.import_gguf(path)

    def _imported(self, model: InstalledModel) -> None:
        self.window.chat.refresh_models()
        self.window.setup.recompute()  # a catalog model imported: its row is marked installed
        self.show()
        self.panel.select(model.id)
        self.window.notice.show_message(
            f"Imported {model.display_name}. Its file stays where it is: {model.path}", NoticeLevel.INFO, "",
            action=("Start chatting", lambda: self.window.open_chat(model.id)))

    # ------------------------------------------------------------------ delete
    def confirm_delete(self, model: InstalledModel) -> QMessageBox | None:
        """Ask first, saying what will be deleted and what it frees (window-modal, not a nested loop)."""
        if self.confirm_box is not None:
            return None
        chat = self.window.chat
        if chat.busy and chat.model_id == model.id:
            self.window.notice.show_message("A reply is still being written with this model.", NoticeLevel.INFO,
                                            "Stop it first, then delete the model.")
            return None
        title = f"Delete {model.display_name}?" if model.owned else f"Remove {model.display_name} from the list?"
        box = QMessageBox(QMessageBox.Icon.Question, "Delete model" if model.owned else "Remove model",
                          f"{title}\n\n{removal_preview(model)}", QMessageBox.StandardButton.NoButton, self.window)
        box.setTextFormat(Qt.TextFormat.PlainText)  # a name and a path from files: never rich text
        box.setObjectName("confirm-delete-model")
        box.setWindowModality(Qt.WindowModality.WindowModal)
        ask_first(self, box, "Delete" if model.owned else "Remove", QMessageBox.ButtonRole.DestructiveRole,
                  lambda: self._delete(model))  # fmt: skip
        return box

    def _delete(self, model: InstalledModel) -> None:
        if self.window.chat.model_id == model.id:
            self.window.chat.unload_model()  # the host frees it before the next request; the file goes after
        self.controller.remove(model)

    def _removed(self, result: ModelRemoved) -> None:
        self.window.chat.refresh_models()
        self.window.setup.recompute()  # the fit list's "installed" marks
        self.window.notice.show_message(result.sentence(), NoticeLevel.INFO, "")

    # ------------------------------------------------------------------ folder
    def choose_folder(self) -> None:
        if self.window.downloads.active:
            self.window.notice.show_message("A download is running.", NoticeLevel.INFO,
                                            "Pause or finish it first, then change the models folder.")
            return
        dialog = QFileDialog(self.window, "Choose the folder for new downloads", str(self.window.store.models_dir))
        dialog.setObjectName("folder-dialog")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(lambda folder: self.controller.change_folder(Path(folder)))
        dialog.open()

    def _folder_changed(self, folder: str) -> None:
        window = self.window
        default = window.paths.models_dir
        window.settings.models_dir = "" if Path(folder) == default.resolve() else folder
        window.save_settings()
        self.panel.set_folder(folder)
        window.notice.show_message(f"New downloads go to {folder}.", NoticeLevel.INFO,
                                   "Models already installed stay where they are.")

    def open_folder(self) -> None:
        folder = self.window.store.models_dir
        folder.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.window.notice.show_message("Could not open the models folder.", NoticeLevel.INFO, str(folder))
