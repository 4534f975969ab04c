"""The window and the command line on one chat core (issue 12), with the real Gemma 3 270M on the CPU.

- The CLI and the window produce identical history rows and identical prompt token ids for the same
  conversation (both drive ChatSession).
- What is loaded has one owner (the model host): the chat panel and the fit list show the loaded context;
  opening a conversation never changes it; choosing another context reloads the model.
"""

from __future__ import annotations

import io
import sqlite3
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gemmadesk.cli import main as cli_main
from gemmadesk.core.engine import Engine
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.core.settings import SettingsStore
from gemmadesk.core.store import ModelStore
from gemmadesk.core.types import ChatMessage, LoadSettings
from gemmadesk.ui.main_window import MainWindow
from tests.ui.windows import history_locked, open_loaded_window

pytestmark = pytest.mark.slow
LONG = 180_000
TURNS = ("The capital of France is", "And the capital of Italy is")


@pytest.fixture
def installed(gemma3_gguf: Path) -> str:
    return ModelStore(app_paths()).import_file(gemma3_gguf).id


def open_window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    return open_loaded_window(qtbot, LONG)


def send(qtbot, window: MainWindow, text: str) -> None:  # type: ignore[no-untyped-def]
    window.chat_view.composer.edit.setPlainText(text)
    qtbot.keyClick(window.chat_view.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=LONG)


def _rows(history: HistoryStore, conversation_id: int) -> list[tuple[object, ...]]:
    return [
        (m.role, m.content, m.thoughts, m.model, m.settings, m.status, m.stats.get("completion_tokens"),
         m.stats.get("prompt_tokens"), m.stats.get("stop_reason"))
        for m in history.messages(conversation_id)
    ]  # fmt: skip


def _prompt(history: HistoryStore, conversation_id: int) -> list[ChatMessage]:
    conv = history.get_conversation(conversation_id)
    system = [ChatMessage("system", conv.system_prompt)] if conv.system_prompt else []
    return system + [ChatMessage(m.role, m.content) for m in history.messages(conversation_id)]


def test_cli_and_window_write_identical_rows_and_prompt_tokens(qtbot, installed: str, gemma3_gguf: Path,
                                                               capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    # The same defaults for both: a new chat's settings come from settings.json.
    settings_store = SettingsStore(app_paths().settings_file)
    settings = settings_store.load()
    settings.temperature, settings.max_tokens, settings.system_prompt = 0.0, 12, "Answer briefly."
    settings.context_length = 2048
    settings_store.save(settings)

    window = open_window(qtbot)
    for text in TURNS:
        send(qtbot, window, text)
    gui_conversation = window.chat.conversation_id
    assert gui_conversation is not None
    window.close()

    stdin = sys.stdin
    sys.stdin = io.StringIO("\n".join(TURNS) + "\n/quit\n")
    try:
        code = cli_main(["chat", installed])
    finally:
        sys.stdin = stdin
    assert code == 0, capsys.readouterr().err

    history = HistoryStore(app_paths().history_db)
    try:
        conversations = history.list_conversations()
        assert len(conversations) == 2
        cli_conversation = next(c.id for c in conversations if c.id != gui_conversation)
        gui_rows, cli_rows = _rows(history, gui_conversation), _rows(history, cli_conversation)
        assert [r[0] for r in gui_rows] == ["user", "assistant", "user", "assistant"]
        assert gui_rows == cli_rows
        assert history.get_conversation(cli_conversation).system_prompt == "Answer briefly."
        gui_prompt, cli_prompt = _prompt(history, gui_conversation), _prompt(history, cli_conversation)
    finally:
        history.close()
    engine = Engine()
    engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=2048, n_threads=1))
    try:
        gui_tokens, cli_tokens = engine.tokenize_prompt(gui_prompt), engine.tokenize_prompt(cli_prompt)
    finally:
        engine.unload()
    assert gui_tokens == cli_tokens and len(gui_tokens) > 20


def test_the_loaded_context_has_one_owner(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    """Issue 12 item 1: opening a conversation whose replies were made with another context used to show
    that context in the panel while the model kept its own. Now the panel and the fit list show what is
    loaded, and choosing a context reloads the model with it."""
    seeded = HistoryStore(app_paths().history_db)
    conv = seeded.create_conversation(title="old chat")
    seeded.add_message(conv.id, "user", "hello")
    seeded.add_message(conv.id, "assistant", "hi", settings={"n_ctx": 2048, "max_tokens": 99, "temperature": 0.5})
    seeded.close()
    window = open_window(qtbot)
    panel, ctl = window.chat_view.settings_panel, window.chat
    loaded = ctl.bridge.state.settings
    assert loaded is not None and loaded.n_ctx == 8192
    ctl.open_conversation(conv.id)
    assert panel.n_ctx.currentData() == 8192, "opening a conversation does not change what is loaded"
    assert panel.max_tokens.value() == 99, "the conversation's own sampling settings come back"

    panel.n_ctx.setCurrentIndex(panel.n_ctx.findData(4096))
    panel.n_ctx.activated.emit(panel.n_ctx.findData(4096))  # what choosing it with the mouse does
    qtbot.waitUntil(lambda: ctl.report is not None and ctl.report.n_ctx == 4096, timeout=LONG)
    qtbot.waitUntil(lambda: window.setup.options.n_ctx == 4096, timeout=10_000)
    assert panel.n_ctx.currentData() == 4096
    assert window.setup_page.view.context_box.currentData() == 4096, "the fit list plans for what is loaded"
    assert SettingsStore(app_paths().settings_file).load().context_length == 4096, "and it is the new default"
    window.close()


def test_sending_while_the_database_is_locked_is_a_notice(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    """Issue 10 item 13 and issue 11 (notices mid-session): another process holds the history locked; the
    message is sent and kept in the history's journal, and the window says so at once (before, the notice
    waited for the next start)."""
    window = open_window(qtbot)
    window.chat_view.settings_panel.max_tokens.setValue(16)
    window.chat.new_conversation(keep_settings=True)
    composer = window.chat_view.composer
    with history_locked():
        composer.edit.setPlainText("Hello there")
        qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
        assert window.notice.isVisible() and "pending.json" in window.notice.text(), "where the message waits"
        assert window.chat.transcript.messages()[0].content == "Hello there", "the message is not lost"
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=LONG)
    assert [m.role for m in window.chat.transcript.messages()] == ["user", "assistant"]
    assert [m.content for m in window.chat.history.messages(window.chat.conversation_id or 0)][0] == "Hello there"
    composer.edit.setPlainText("And again")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=LONG)
    assert [m.role for m in window.chat.transcript.messages()] == ["user", "assistant"] * 2
    window.close()
    db = sqlite3.connect(app_paths().history_db)
    saved = [row[0] for row in db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id")]
    db.close()
    assert saved == ["Hello there", "And again"], "the journalled turn reached the database once it was writable"
