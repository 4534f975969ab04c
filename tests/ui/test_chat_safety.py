"""Issue 10 items 1 and 13 in the real window: an edit belongs to one conversation; failures in slots and
uncaught errors become notices (and log entries), never silent tracebacks."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt, QTimer

from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.ui.main_window import MainWindow
from tests.ui.windows import history_locked


def _two_chats(window: MainWindow) -> tuple[int, int]:
    history = window.chat.history
    ids = []
    for name in ("A", "B"):
        conv = history.create_conversation()
        history.add_message(conv.id, "user", f"question {name}")
        history.add_message(conv.id, "assistant", f"answer {name}")
        ids.append(conv.id)
    window.chat.refresh_conversations()
    return ids[0], ids[1]


def _select(window: MainWindow, conversation_id: int) -> None:
    side = window.chat_view.sidebar
    side.list.setCurrentIndex(window.chat.conversations.index(window.chat.conversations.row_of(conversation_id)))
    assert window.chat.conversation_id == conversation_id


def test_switching_chats_cancels_an_edit(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """Issue 10 item 1: Edit in chat A, then pick chat B: the edit (banner, A's text) must end, and Enter in
    B sends a new message instead of replacing B's message at the same position."""
    a, b = _two_chats(window)
    composer = window.chat_view.composer
    _select(window, a)
    window.chat_view.messages.bubbles[0].edit_button.click()
    assert composer.editing_label.isVisible()
    assert composer.edit.toPlainText() == "question A"

    _select(window, b)
    assert not composer.editing_label.isVisible(), "the edit banner of chat A must not stay in chat B"
    assert composer.edit.toPlainText() != "question A"
    sent: list[tuple[str, object]] = []
    composer.send.connect(lambda text, target: sent.append((text, target)))
    composer.edit.setPlainText("a new message for B")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert sent == [("a new message for B", None)], "a plain send, not an edit of row 0"
    assert [m.content for m in window.chat.history.messages(b)] == ["question B", "answer B"]


def test_esc_and_a_visible_cancel_end_an_edit(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    a, _b = _two_chats(window)
    composer = window.chat_view.composer
    _select(window, a)
    composer.edit.setPlainText("my draft")
    window.chat_view.messages.bubbles[0].edit_button.click()
    assert composer.cancel_edit_button.isVisible()
    assert composer.cancel_edit_button.accessibleName()
    qtbot.keyClick(composer.edit, Qt.Key.Key_Escape)
    assert not composer.editing_label.isVisible()
    assert composer.edit.toPlainText() == "my draft", "cancelling brings back what was typed before"

    window.chat_view.messages.bubbles[0].edit_button.click()
    assert composer.editing_label.isVisible()
    composer.cancel_edit_button.click()
    assert not composer.editing_label.isVisible()
    assert composer.edit.toPlainText() == "my draft"


def test_renaming_a_chat_deleted_elsewhere_is_a_notice(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """The CLI (another connection) deleted the conversation meanwhile: the in-place rename is a notice,
    not an exception escaping a Qt slot."""
    a, _b = _two_chats(window)
    other = HistoryStore(app_paths().history_db)
    other.delete_conversation(a)
    other.close()
    model = window.chat.conversations
    model.setData(model.index(model.row_of(a)), "New title")
    assert window.notice.isVisible()
    assert "does not exist" in window.notice.text()
    assert model.row_of(a) == -1, "the list was refreshed"


@pytest.fixture
def locked_history() -> Iterator[threading.Event]:
    """Another process holds the history database locked (a real SQLite lock); set the event to release."""
    with history_locked() as release:
        yield release


def test_a_locked_database_in_slots_is_a_notice(qtbot, window: MainWindow, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    """Delete and new chat while another process holds the database: after SQLite's busy timeout the delete
    is refused in one notice that also says new messages wait in the journal; a new chat is kept in the
    journal (said once, not again); the window keeps working once the lock is gone."""
    conv = window.chat.history.create_conversation(title="keep me")
    window.chat.refresh_conversations()
    locked_history: threading.Event = request.getfixturevalue("locked_history")
    window.chat.delete(conv.id)
    text = window.notice.text()
    assert window.notice.isVisible() and "database is locked" in text and "nothing was deleted" in text
    assert "pending.json" in text, "the history's own notice is in the same sentence, not lost"
    assert window.chat.conversations.row_of(conv.id) >= 0
    window.notice.hide()
    window.chat_view.sidebar.new_button.click()
    assert window.chat.conversation_id is not None, "the new chat waits in the journal"
    assert not window.notice.isVisible(), "the journal was already announced: not again"
    locked_history.set()
    qtbot.wait(100)
    window.chat_view.sidebar.new_button.click()
    assert window.chat.conversation_id is not None


@pytest.mark.qt_no_exception_capture
def test_uncaught_errors_are_logged_and_shown(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """Issue 10 item 13: nothing caught an error (in a slot, or in another thread): the traceback goes to
    gemmadesk.log and the window says so in one line. (The errors are raised on purpose by the test: an
    internal bug cannot be caused for real.)"""
    from gemmadesk.ui.app import install_crash_handlers

    paths = app_paths()
    uninstall = install_crash_handlers(window, paths)
    try:

        def broken_slot() -> None:
            raise ValueError("boom in a slot")

        QTimer.singleShot(0, broken_slot)
        qtbot.waitUntil(lambda: "boom in a slot" in window.notice.text(), timeout=5000)
        assert "Something went wrong inside GemmaDesk (ValueError: boom in a slot)" in window.notice.text()
        assert str(paths.log_file) in window.notice.text()
        window.notice.hide()

        def broken_thread() -> None:
            raise RuntimeError("boom in a thread")

        worker = threading.Thread(target=broken_thread, name="worker-x")
        worker.start()
        worker.join(10)
        qtbot.waitUntil(lambda: "boom in a thread" in window.notice.text(), timeout=5000)
    finally:
        uninstall()
    log = paths.log_file.read_text(encoding="utf-8")
    assert "ValueError: boom in a slot" in log and "RuntimeError: boom in a thread" in log
    assert "Traceback (most recent call last)" in log
    assert "thread worker-x" in log
