"""Issue 11 item 7: the Models page is no dead end. In the real window (offscreen): the way back to the chat,
Ctrl+N from there, the Installed tab (imported models with their fit verdict), Import… by the File menu's
dialog and by dropping a file, Delete with what it frees (only GemmaDesk's own files), the models folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from gemmadesk.core.catalog import Catalog, load_catalog
from gemmadesk.core.downloads import download
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.core.settings import SettingsStore
from gemmadesk.core.store import ModelStore
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.main_window import MainWindow
from tests.support.hubserver import HubServer
from tests.support.tiny_gguf import write_gguf

LONG = 60_000


def open_window(qtbot, hw: Hardware, catalog: Catalog | None = None) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(hardware=hw, catalog=catalog)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitActive(window):  # keyboard shortcuts act in the active window
        window.activateWindow()
    return window


def press(qtbot, window: MainWindow, key: QKeySequence) -> None:  # type: ignore[no-untyped-def]
    """A key as the user types it, into the focused widget of the window."""
    combo = key[0]  # type: ignore[index]  # QKeySequence.__getitem__ exists at run time, not in the stubs
    qtbot.keyClick(QApplication.focusWidget() or window, combo.key(), combo.keyboardModifiers())


def tiny_model(tmp_path: Path, name: str = "my-model.gguf") -> Path:
    return write_gguf(tmp_path / "users-files" / name, tensor_bytes=64 * 1024)


def test_back_to_chat_and_ctrl_n_from_the_models_page(qtbot, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    """Regression: Ctrl+N did nothing on the Models page and only an installed row's "Start chatting" led back."""
    window = open_window(qtbot, laptop_8gb)
    window.show_setup()
    page = window.setup_page
    assert page.back_button.isVisible() and page.back_button.accessibleName()
    page.back_button.click()
    assert window.stack.currentWidget() is window.chat_view

    window.show_setup()
    page.view.table.setFocus()
    qtbot.keyClick(page.view.table, Qt.Key.Key_Escape)
    assert window.stack.currentWidget() is window.chat_view, "Esc goes back too"

    window.show_setup()
    before = len(window.chat.history.list_conversations())
    press(qtbot, window, QKeySequence(QKeySequence.StandardKey.New))
    assert window.stack.currentWidget() is window.chat_view
    assert window.chat.conversation_id is not None
    assert len(window.chat.history.list_conversations()) == before + 1
    assert window.chat_view.messages.hint.isVisible(), "the new chat says what to do"


def test_installed_tab_lists_imported_models_with_their_verdict(qtbot, laptop_8gb: Hardware, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Regression: imported models were not listed on the Models page."""
    path = tiny_model(tmp_path)
    ModelStore(app_paths()).import_file(path)
    window = open_window(qtbot, laptop_8gb)
    window.installed.show()
    panel = window.installed.panel
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=LONG)
    assert window.setup_page.tabs.currentWidget() is panel
    assert window.setup_page.tabs.tabText(window.installed.index) == "&Installed (1)"
    cells = [panel.table.item(0, c).text() for c in range(panel.table.columnCount())]  # type: ignore[union-attr]
    assert cells[2] in ("fits", "tight", "too large") and cells[3] == "imported" and cells[4] == str(path)
    assert panel.detail.text(), "the selected row says where it runs"
    assert panel.delete_button.text() == "&Remove from list…", "an imported file is only forgotten"


def _choose_file(qtbot, window: MainWindow, path: Path) -> None:  # type: ignore[no-untyped-def]
    dialog = window.window_actions.dialog
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    dialog.selectFile(str(path))
    dialog.accept()


def test_file_import_adds_a_model_and_offers_the_chat(qtbot, laptop_8gb: Hardware, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tiny_model(tmp_path)
    window = open_window(qtbot, laptop_8gb)
    window.window_actions.import_action.trigger()
    _choose_file(qtbot, window, path)
    qtbot.waitUntil(lambda: window.store.list() != [] and "Imported" in window.notice.text(), timeout=LONG)
    assert window.notice.action_button.text() == "Start chatting"
    assert window.setup_page.tabs.currentWidget() is window.installed.panel
    qtbot.waitUntil(lambda: window.installed.panel.table.rowCount() == 1, timeout=LONG)
    assert path.exists(), "an imported file stays where it is"
    assert window.chat_view.model_box.count() == 1, "the chat's model list has it"


def _drop(window: MainWindow, *paths: Path) -> bool:
    """A real QDropEvent given to the window's drop handling. (Qt delivers drop events only while its drag
    manager runs a drag, which offscreen tests cannot start; the window's event filter is called with the
    event as Qt would.) Returns whether the drop was taken."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    for kind in (QDragEnterEvent, QDropEvent):
        event = kind(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier) if kind is QDragEnterEvent else \
            QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)  # fmt: skip
        event.setAccepted(False)
        taken = window.window_actions.eventFilter(window, event)
        if not (taken and event.isAccepted()):
            return False
    return True


def test_dropping_a_gguf_imports_it_and_a_bad_one_says_why(qtbot, laptop_8gb: Hardware, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, laptop_8gb)
    good = tiny_model(tmp_path)
    assert _drop(window, good)
    qtbot.waitUntil(lambda: len(window.store.list()) == 1, timeout=LONG)

    bad = tmp_path / "users-files" / "not-a-model.gguf"
    bad.write_bytes(b"<b>not a GGUF</b>" * 100)
    _drop(window, bad)
    qtbot.waitUntil(lambda: "not-a-model.gguf was not imported" in window.notice.text(), timeout=LONG)
    assert window.notice.level == "error" and "&lt;b&gt;" not in window.notice.text()[:40]
    assert len(window.store.list()) == 1 and bad.exists()

    other = tmp_path / "notes.txt"
    other.write_text("x")
    assert not _drop(window, other), "other files are not taken"


def test_deleting_a_download_says_what_it_frees_and_frees_it(
    qtbot, hub: HubServer, laptop_8gb: Hardware, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = hub.add_file("test/tiny", write_gguf(tmp_path / "served" / "tiny-q4_0.gguf", tensor_bytes=3 * 2**20))
    entry = hub.entry_for(served)
    real = load_catalog()
    catalog = Catalog(real.version, real.architectures, (entry,))
    installed = download(entry, ModelStore(app_paths(), catalog=catalog))
    assert installed.path.exists()
    window = open_window(qtbot, laptop_8gb, catalog)
    window.installed.show()
    panel = window.installed.panel
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=LONG)
    assert panel.delete_button.text() == "&Delete…"
    panel.delete_button.click()
    box = window.installed.confirm_box
    assert isinstance(box, QMessageBox) and box.textFormat() == Qt.TextFormat.PlainText
    assert human_bytes(installed.size_bytes) in box.text() and str(installed.path) in box.text()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel), "Enter does not delete"
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert installed.path.exists()

    panel.delete_button.click()
    box = window.installed.confirm_box
    assert box is not None
    [delete] = [b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole]
    delete.click()
    qtbot.waitUntil(lambda: "freed" in window.notice.text(), timeout=LONG)
    assert human_bytes(installed.size_bytes) in window.notice.text()
    assert not installed.path.exists()
    qtbot.waitUntil(lambda: panel.table.rowCount() == 0 and panel.empty.isVisible(), timeout=LONG)


def test_removing_an_imported_model_keeps_the_file(qtbot, laptop_8gb: Hardware, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tiny_model(tmp_path)
    ModelStore(app_paths()).import_file(path)
    window = open_window(qtbot, laptop_8gb)
    window.installed.show()
    panel = window.installed.panel
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=LONG)
    box = window.installed.confirm_delete(window.store.list()[0])
    assert box is not None and "not deleted" in box.text()
    [remove] = [b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole]
    remove.click()
    qtbot.waitUntil(lambda: "was kept" in window.notice.text() or "Removed" in window.notice.text(), timeout=LONG)
    assert path.exists() and window.store.list() == []


def test_the_models_folder_is_shown_and_changed(qtbot, laptop_8gb: Hardware, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, laptop_8gb)
    panel = window.installed.panel
    assert panel.folder.full_text() == str(window.store.models_dir)
    panel.change_folder_button.click()
    dialog = window.findChild(QFileDialog, "folder-dialog")
    assert isinstance(dialog, QFileDialog)
    chosen = tmp_path / "big-disk" / "models"
    chosen.mkdir(parents=True)
    dialog.fileSelected.emit(str(chosen))
    qtbot.waitUntil(lambda: panel.folder.full_text() == str(chosen.resolve()), timeout=LONG)
    assert window.store.models_dir == chosen.resolve()
    assert SettingsStore(app_paths().settings_file).load().models_dir == str(chosen.resolve())
    assert list(chosen.iterdir()) == [], "the write probe left nothing behind"

    window.installed.controller.change_folder(Path("relative/folder"))
    qtbot.waitUntil(lambda: "cannot be the models folder" in window.notice.text(), timeout=LONG)
    assert window.store.models_dir == chosen.resolve()
