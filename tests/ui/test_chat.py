"""Chat round trips through the real window on the real Gemma 3 270M GGUF (llama.cpp on the CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.core.store import ModelStore
from gemmadesk.ui.main_window import MainWindow
from tests.ui.windows import open_loaded_window

pytestmark = pytest.mark.slow

LONG = 120_000  # ms; generous for a loaded 2-core machine


def open_window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    return open_loaded_window(qtbot, LONG)


def send(qtbot, window: MainWindow, text: str) -> None:  # type: ignore[no-untyped-def]
    edit = window.chat_view.composer.edit
    edit.setFocus()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


@pytest.fixture
def installed(gemma3_gguf: Path) -> str:
    return ModelStore(app_paths()).import_file(gemma3_gguf).id


def test_chat_streams_a_reply_and_persists_across_restart(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot)
    view, ctl = window.chat_view, window.chat
    assert window.stack.currentWidget() is view
    assert view.banner.isVisible()
    assert "CPU" in view.banner.text()
    assert view.model_box.currentData() == installed
    view.settings_panel.max_tokens.setValue(24)
    view.settings_panel.temperature.setValue(0.0)

    changed_rows: list[tuple[int, int]] = []
    ctl.transcript.dataChanged.connect(lambda a, b: changed_rows.append((a.row(), b.row())))
    send(qtbot, window, "The capital of France is")
    assert view.composer.stop_button.isVisible()  # streaming shows the stop button at once
    qtbot.waitUntil(lambda: not ctl.busy and not view.composer.stop_button.isVisible(), timeout=LONG)

    rows = ctl.transcript.messages()
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[0].content == "The capital of France is"
    assert rows[1].content.strip()
    assert not rows[1].streaming
    assert rows[1].stats["completion_tokens"] > 0
    assert changed_rows
    assert all(a == b == 1 for a, b in changed_rows)
    assert "tok/s" in view.messages.bubbles[1].stats.text()
    title = ctl.conversations.index(0).data()
    assert title == "The capital of France is"
    answer = rows[1].content
    window.close()

    again = open_window(qtbot)
    assert again.chat.conversations.rowCount() == 1
    restored = again.chat.transcript.messages()
    assert [m.content for m in restored] == ["The capital of France is", answer]
    assert again.chat_view.settings_panel.max_tokens.value() == 24  # per-conversation settings came back
    again.close()


def test_stop_ends_the_reply_and_keeps_the_partial_text(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot)
    view, ctl = window.chat_view, window.chat
    view.settings_panel.max_tokens.setValue(4000)
    send(qtbot, window, "Write a very long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: len(ctl.transcript.messages()[-1].content) > 20, timeout=LONG)
    qtbot.keyClick(view.composer.edit, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=LONG)

    reply = ctl.transcript.messages()[-1]
    assert reply.stats["stop_reason"] == "stopped"
    assert reply.stats["completion_tokens"] < 4000
    assert "stopped" in view.messages.bubbles[-1].stats.text()
    stored = HistoryStore(app_paths().history_db).messages(ctl.conversation_id or -1)
    assert stored[-1].status == "partial"
    assert stored[-1].content == reply.content
    window.close()


def test_regenerate_and_edit_and_resend(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot)
    view, ctl = window.chat_view, window.chat
    view.settings_panel.max_tokens.setValue(8)
    send(qtbot, window, "One two three")
    qtbot.waitUntil(lambda: not ctl.busy, timeout=LONG)
    history = HistoryStore(app_paths().history_db)
    first_created = history.messages(ctl.conversation_id or -1)[1].created_at

    bubble = view.messages.bubbles[1]
    assert bubble.regen_button.isVisibleTo(window)
    bubble.regen_button.click()
    qtbot.waitUntil(lambda: not ctl.busy and not ctl.transcript.messages()[-1].streaming, timeout=LONG)
    msgs = ctl.transcript.messages()
    assert len(msgs) == 2
    assert msgs[1].content
    stored = history.messages(ctl.conversation_id or -1)
    assert len(stored) == 2
    assert stored[1].created_at > first_created

    view.messages.bubbles[0].edit_button.click()
    assert view.composer.edit.toPlainText() == "One two three"
    view.composer.edit.setPlainText("Four five six")
    qtbot.keyClick(view.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not ctl.busy and not ctl.transcript.messages()[-1].streaming, timeout=LONG)
    msgs = ctl.transcript.messages()
    assert [m.role for m in msgs] == ["user", "assistant"]
    assert msgs[0].content == "Four five six"
    stored = history.messages(ctl.conversation_id or -1)
    assert [m.content for m in stored] == [m.content for m in msgs]
    window.close()


def test_a_model_file_that_changed_on_disk_is_explained(qtbot, gemma3_gguf: Path, tmp_path: Path, laptop_8gb) -> None:  # type: ignore[no-untyped-def]
    """A real GGUF copy is installed, then cut short on disk (a damaged or half-copied file)."""
    import shutil

    copy = tmp_path / "gemma-copy.gguf"
    shutil.copyfile(gemma3_gguf, copy)
    model_id = ModelStore(app_paths()).import_file(copy).id
    with copy.open("r+b") as fh:
        fh.truncate(copy.stat().st_size // 2)
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    window.open_chat(model_id)
    assert window.notice.isVisible()
    assert "changed since it was installed" in window.notice.text()
    assert "Download it again" in window.notice.text()
    assert window.chat.report is None
    window.close()
